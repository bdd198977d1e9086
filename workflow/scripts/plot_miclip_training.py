from clipmech.runner import run
from clipmech.stages.plot_miclip_training import plot_miclip_training

run(plot_miclip_training, snakemake)
