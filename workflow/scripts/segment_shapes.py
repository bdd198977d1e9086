from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.segment_shapes(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.input.text,
    dict(snakemake.output),
    snakemake.params.segmentation,
    snakemake.params.chunk_size,
    snakemake.params.seed,
    snakemake.params.label,
)
