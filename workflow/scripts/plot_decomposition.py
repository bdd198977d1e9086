from clipmech.runner import run
from clipmech.stages.plot_decomposition import plot_decomposition

run(plot_decomposition, snakemake)
