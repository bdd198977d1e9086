from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.ablate_components(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.input.text,
    dict(snakemake.output),
    snakemake.params.ablation,
    snakemake.params.chunk_size,
    snakemake.params.label,
)
