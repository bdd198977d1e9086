from clipmech.runner import run
from clipmech.stages.synthesize_shapes import synthesize_shapes

run(synthesize_shapes, snakemake)
