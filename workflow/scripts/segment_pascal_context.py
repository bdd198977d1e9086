from clipmech.runner import run
from clipmech.stages.segment_pascal_context import segment_pascal_context

run(segment_pascal_context, snakemake)
