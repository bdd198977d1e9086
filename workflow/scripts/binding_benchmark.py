from clipmech.logs import to_file
from clipmech.stages import binding

to_file(snakemake.log[0])
binding.binding_benchmark(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.input.store,
    snakemake.input.data,
    snakemake.output,
    snakemake.params.binding,
    snakemake.params.seed,
    snakemake.params.device,
    snakemake.params.batch_size,
    snakemake.params.label,
)
