from clipmech.logs import to_file
from clipmech.stages.embed_miclip_concepts import embed_miclip_concepts

to_file(snakemake.log[0])
embed_miclip_concepts(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    output=snakemake.output.text,
    n_words=snakemake.params.n_words,
    batch_size=256,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
