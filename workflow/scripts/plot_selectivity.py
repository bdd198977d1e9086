from clipmech.runner import run
from clipmech.stages.plot_selectivity import plot_selectivity

run(plot_selectivity, snakemake)
