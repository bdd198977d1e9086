from clipmech.logs import to_file
from clipmech.stages.plot_sae_training import plot_sae_training

to_file(snakemake.log[0])
plot_sae_training(log=snakemake.input.log, label=snakemake.params.label, path=snakemake.output.figure)
