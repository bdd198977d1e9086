from clipmech.runner import run
from clipmech.stages.index_images import index_images

run(index_images, snakemake)
