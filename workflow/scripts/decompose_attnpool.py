from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.decompose_attnpool(
    snakemake.input.store,
    dict(snakemake.output),
    snakemake.params.decomposition,
    snakemake.params.label,
)
