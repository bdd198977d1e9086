from clipmech.runner import run
from clipmech.stages.plot_dataset import plot_dataset

run(plot_dataset, snakemake)
