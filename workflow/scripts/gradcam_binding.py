from clipmech.logs import to_file
from clipmech.stages import gradcam

to_file(snakemake.log[0])
gradcam.gradcam_binding(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.input.data,
    snakemake.output,
    snakemake.params.gradcam,
    snakemake.params.seed,
    snakemake.params.device,
    snakemake.threads,
    snakemake.params.label,
)
