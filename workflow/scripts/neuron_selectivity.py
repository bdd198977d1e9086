from clipmech.logs import to_file
from clipmech.stages import selectivity

to_file(snakemake.log[0])
selectivity.neuron_selectivity(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.output.units,
    snakemake.output.topk,
    snakemake.output.null,
    snakemake.params.selectivity,
    snakemake.params.seed,
)
