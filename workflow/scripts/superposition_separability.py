from clipmech.logs import to_file
from clipmech.stages import superposition

to_file(snakemake.log[0])
superposition.superposition_separability(
    snakemake.input.units,
    snakemake.input.store,
    snakemake.input.data,
    snakemake.output,
    snakemake.params.superposition,
    snakemake.params.seed,
    snakemake.params.label,
)
