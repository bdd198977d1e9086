from clipmech.logs import to_file
from clipmech.stages import figures

to_file(snakemake.log[0])
figures.plot_selectivity(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.input.units,
    snakemake.input.topk,
    snakemake.input.null,
    snakemake.output,
    snakemake.params.selectivity,
    snakemake.params.seed,
)
