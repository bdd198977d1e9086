from clipmech.runner import run
from clipmech.stages.plot_training import plot_training

run(plot_training, snakemake)
