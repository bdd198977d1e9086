from clipmech.logs import to_file
from clipmech.stages.embed_text import embed_text

to_file(snakemake.log[0])
embed_text(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    output=snakemake.output.text,
    params=snakemake.params.text,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
