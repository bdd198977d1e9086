from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.find_registers(
    snakemake.input.store,
    dict(snakemake.output),
    snakemake.params.registers,
    snakemake.params.label,
)
