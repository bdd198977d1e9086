from clipmech.runner import run
from clipmech.stages.plot_ablation import plot_ablation

run(plot_ablation, snakemake)
