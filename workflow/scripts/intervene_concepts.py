from clipmech.logs import to_file
from clipmech.stages.intervene_concepts import intervene_concepts

to_file(snakemake.log[0])
intervene_concepts(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    auroc_path=snakemake.input.auroc,
    out=snakemake.output,
    params=snakemake.params.concepts,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
