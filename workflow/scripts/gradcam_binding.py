from clipmech.logs import to_file
from clipmech.stages.gradcam_binding import gradcam_binding

to_file(snakemake.log[0])
gradcam_binding(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    dataset_dir=snakemake.input.data,
    out=snakemake.output,
    params=snakemake.params.gradcam,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
