from clipmech.runner import run
from clipmech.stages.plot_sae_evaluation import plot_sae_evaluation

run(plot_sae_evaluation, snakemake)
