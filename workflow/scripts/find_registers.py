from clipmech.logs import to_file
from clipmech.stages.find_registers import find_registers

to_file(snakemake.log[0])
find_registers(
    store=snakemake.input.store,
    out=dict(snakemake.output),
    params=snakemake.params.registers,
    label=snakemake.params.label,
)
