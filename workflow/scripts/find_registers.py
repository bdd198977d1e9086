from clipmech.runner import run
from clipmech.stages.find_registers import find_registers

run(find_registers, snakemake)
