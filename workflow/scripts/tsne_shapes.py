from clipmech.logs import to_file
from clipmech.stages.tsne_shapes import tsne_shapes

to_file(snakemake.log[0])
tsne_shapes(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.tsne,
    seed=snakemake.params.seed,
    label=snakemake.params.label,
)
