from clipmech.logs import to_file
from clipmech.stages.train_clip import train_clip

to_file(snakemake.log[0])
train_clip(
    name=snakemake.wildcards.model,
    architecture=snakemake.params.architecture,
    params=snakemake.params.train,
    checkpoint=snakemake.output.checkpoint,
    metrics=snakemake.output.metrics,
    losses=snakemake.output.losses,
    threads=snakemake.threads,
)
