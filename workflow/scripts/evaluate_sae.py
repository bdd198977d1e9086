from clipmech.logs import to_file
from clipmech.stages.evaluate_sae import evaluate_sae

to_file(snakemake.log[0])
evaluate_sae(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    store=snakemake.input.store,
    checkpoint=snakemake.input.sae,
    out=snakemake.output,
    params=snakemake.params.evaluation,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
