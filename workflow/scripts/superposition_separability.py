from clipmech.logs import to_file
from clipmech.stages.superposition_separability import superposition_separability

to_file(snakemake.log[0])
superposition_separability(
    units=snakemake.input.units,
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.superposition,
    seed=snakemake.params.seed,
    label=snakemake.params.label,
)
