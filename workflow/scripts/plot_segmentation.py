from clipmech.runner import run
from clipmech.stages.plot_segmentation import plot_segmentation

run(plot_segmentation, snakemake)
