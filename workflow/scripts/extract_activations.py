from clipmech.logs import to_file
from clipmech.stages.extract_activations import extract_activations

to_file(snakemake.log[0])
extract_activations(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    store=snakemake.output.store,
    params=snakemake.params.extraction,
    threads=snakemake.threads,
    code=snakemake.params.code,
)
