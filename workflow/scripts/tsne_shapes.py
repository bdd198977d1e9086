from clipmech.runner import run
from clipmech.stages.tsne_shapes import tsne_shapes

run(tsne_shapes, snakemake)
