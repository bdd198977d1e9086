from clipmech.runner import run
from clipmech.stages.plot_patching import plot_patching

run(plot_patching, snakemake)
