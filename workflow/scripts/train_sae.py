from clipmech.logs import to_file
from clipmech.stages.train_sae import train_sae

to_file(snakemake.log[0])
train_sae(
    name=snakemake.wildcards.model,
    site=snakemake.wildcards.site,
    store=snakemake.input.store,
    params=snakemake.params.sae,
    out=snakemake.output,
    device=snakemake.params.device,
    threads=snakemake.threads,
    code=snakemake.params.code,
)
