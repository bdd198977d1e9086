from clipmech.logs import to_file
from clipmech.stages.decompose_text import decompose_text

to_file(snakemake.log[0])
decompose_text(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    text_path=snakemake.input.text,
    out=dict(snakemake.output),
    params=snakemake.params.text,
    pc_top_k=snakemake.params.pc_top_k,
    chunk_size=snakemake.params.chunk_size,
    device=snakemake.params.device,
    threads=snakemake.threads,
    label=snakemake.params.label,
)
