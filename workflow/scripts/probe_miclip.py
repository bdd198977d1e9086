from clipmech.logs import to_file
from clipmech.stages.probe_miclip import probe_miclip

to_file(snakemake.log[0])
probe_miclip(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    reference=snakemake.params.reference["name"],
    reference_entry=snakemake.params.reference,
    dataset_dir=snakemake.input.data,
    site=snakemake.wildcards.site,
    output=snakemake.output.probe,
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
