from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.monitor_shift(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.input.text,
    dict(snakemake.output),
    snakemake.params.shift,
    snakemake.params.chunk_size,
    snakemake.params.label,
)
