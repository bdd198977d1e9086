from clipmech.logs import to_file
from clipmech.stages.patch_components import patch_components

to_file(snakemake.log[0])
patch_components(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.patching,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
