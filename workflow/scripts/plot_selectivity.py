from clipmech.logs import to_file
from clipmech.stages.plot_selectivity import plot_selectivity

to_file(snakemake.log[0])
plot_selectivity(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    units=snakemake.input.units,
    topk=snakemake.input.topk,
    null=snakemake.input.null,
    out=snakemake.output,
    params=snakemake.params.selectivity,
    seed=snakemake.params.seed,
)
