from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.decompose_text(
    snakemake.input.store,
    snakemake.input.data,
    snakemake.input.text,
    dict(snakemake.output),
    snakemake.params.text,
    snakemake.params.pc_top_k,
    snakemake.params.chunk_size,
    snakemake.params.device,
    snakemake.threads,
    snakemake.params.label,
)
