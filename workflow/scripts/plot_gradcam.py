from clipmech.runner import run
from clipmech.stages.plot_gradcam import plot_gradcam

run(plot_gradcam, snakemake)
