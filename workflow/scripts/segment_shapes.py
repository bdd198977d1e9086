from clipmech.runner import run
from clipmech.stages.segment_shapes import segment_shapes

run(segment_shapes, snakemake)
