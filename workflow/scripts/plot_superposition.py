from clipmech.runner import run
from clipmech.stages.plot_superposition import plot_superposition

run(plot_superposition, snakemake)
