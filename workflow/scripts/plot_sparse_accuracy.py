from clipmech.runner import run
from clipmech.stages.plot_sparse_accuracy import plot_sparse_accuracy

run(plot_sparse_accuracy, snakemake)
