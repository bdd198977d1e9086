from clipmech.logs import to_file
from clipmech.stages import tsne

to_file(snakemake.log[0])
tsne.tsne_shapes(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.output,
    snakemake.params.tsne,
    snakemake.params.seed,
    snakemake.params.label,
)
