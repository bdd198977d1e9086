from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.embed_text(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.output.text,
    snakemake.params.text,
    snakemake.params.device,
    snakemake.threads,
)
