from clipmech.logs import to_file
from clipmech.stages import extraction

to_file(snakemake.log[0])
extraction.extract_activations(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.input.data,
    snakemake.output.store,
    snakemake.params.extraction,
    snakemake.threads,
)
