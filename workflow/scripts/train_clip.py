from clipmech.logs import to_file
from clipmech.stages import training

to_file(snakemake.log[0])
training.train_model(
    snakemake.wildcards.model,
    snakemake.params.architecture,
    snakemake.params.train,
    snakemake.output.checkpoint,
    snakemake.output.metrics,
    snakemake.output.losses,
    snakemake.threads,
)
