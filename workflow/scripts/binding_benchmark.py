from clipmech.logs import to_file
from clipmech.stages.binding_benchmark import binding_benchmark

to_file(snakemake.log[0])
binding_benchmark(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.binding,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    batch_size=snakemake.params.batch_size,
    label=snakemake.params.label,
)
