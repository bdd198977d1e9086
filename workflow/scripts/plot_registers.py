from clipmech.runner import run
from clipmech.stages.plot_registers import plot_registers

run(plot_registers, snakemake)
