from clipmech.logs import to_file
from clipmech.stages.neuron_selectivity import neuron_selectivity

to_file(snakemake.log[0])
neuron_selectivity(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    units=snakemake.output.units,
    topk=snakemake.output.topk,
    null=snakemake.output.null,
    params=snakemake.params.selectivity,
    seed=snakemake.params.seed,
)
