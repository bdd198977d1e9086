from clipmech.logs import to_file
from clipmech.stages.segment_pascal_context import segment_pascal_context

to_file(snakemake.log[0])
segment_pascal_context(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    out=dict(snakemake.output),
    params=snakemake.params.pascal_context,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
