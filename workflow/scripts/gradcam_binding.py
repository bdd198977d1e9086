from clipmech.runner import run
from clipmech.stages.gradcam_binding import gradcam_binding

run(gradcam_binding, snakemake)
