from clipmech.runner import run
from clipmech.stages.plot_sae_training import plot_sae_training

run(plot_sae_training, snakemake)
