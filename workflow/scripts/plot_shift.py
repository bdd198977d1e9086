from clipmech.runner import run
from clipmech.stages.plot_shift import plot_shift

run(plot_shift, snakemake)
