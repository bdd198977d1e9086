from clipmech.runner import run
from clipmech.stages.plot_binding import plot_binding

run(plot_binding, snakemake)
