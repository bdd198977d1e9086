from clipmech.runner import run
from clipmech.stages.plot_miclip import plot_miclip

run(plot_miclip, snakemake)
