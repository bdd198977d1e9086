from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.segment_pascal_context(
    snakemake.wildcards.model,
    snakemake.params.model,
    dict(snakemake.output),
    snakemake.params.pascal_context,
    snakemake.params.device,
    snakemake.threads,
    snakemake.params.label,
)
