from clipmech.logs import to_file
from clipmech.stages.evaluate_miclip import evaluate_miclip

to_file(snakemake.log[0])
evaluate_miclip(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    kind=snakemake.wildcards.kind,
    dataset_dir=snakemake.input.data,
    probe=snakemake.input.probe,
    concepts=snakemake.input.concepts,
    encoders=snakemake.input.encoders,
    sae=snakemake.input.sae[0] if snakemake.input.sae else None,
    out=snakemake.output,
    params=snakemake.params.evaluation,
    k_top=snakemake.params.k_top,
    label=snakemake.params.label,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
