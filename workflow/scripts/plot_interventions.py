from clipmech.runner import run
from clipmech.stages.plot_interventions import plot_interventions

run(plot_interventions, snakemake)
