from clipmech.logs import to_file
from clipmech.stages import figures

to_file(snakemake.log[0])
figures.plot_training(snakemake.input.metrics, snakemake.input.losses, snakemake.output.figure)
