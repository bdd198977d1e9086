from clipmech.runner import run
from clipmech.stages.plot_concepts import plot_concepts

run(plot_concepts, snakemake)
