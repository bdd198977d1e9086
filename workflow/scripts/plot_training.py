from clipmech.logs import to_file
from clipmech.stages.plot_training import plot_training

to_file(snakemake.log[0])
plot_training(
    metrics=snakemake.input.metrics,
    losses=snakemake.input.losses,
    path=snakemake.output.figure,
)
