from clipmech.logs import to_file
from clipmech.stages.decompose_attnpool import decompose_attnpool

to_file(snakemake.log[0])
decompose_attnpool(
    store=snakemake.input.store,
    out=dict(snakemake.output),
    params=snakemake.params.decomposition,
    label=snakemake.params.label,
)
