from clipmech.logs import to_file
from clipmech.stages.segment_shapes import segment_shapes

to_file(snakemake.log[0])
segment_shapes(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    text_path=snakemake.input.text,
    out=dict(snakemake.output),
    params=snakemake.params.segmentation,
    chunk_size=snakemake.params.chunk_size,
    seed=snakemake.params.seed,
    label=snakemake.params.label,
)
