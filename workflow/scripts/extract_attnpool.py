from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.extract_attnpool(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.input.data,
    snakemake.output.store,
    snakemake.params.extraction,
    snakemake.threads,
)
