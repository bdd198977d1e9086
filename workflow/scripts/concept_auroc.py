from clipmech.logs import to_file
from clipmech.stages.concept_auroc import concept_auroc

to_file(snakemake.log[0])
concept_auroc(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.concepts,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
