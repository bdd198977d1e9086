from clipmech.logs import to_file
from clipmech.stages.ablate_components import ablate_components

to_file(snakemake.log[0])
ablate_components(
    store=snakemake.input.store,
    dataset_dir=snakemake.input.data,
    text_path=snakemake.input.text,
    out=dict(snakemake.output),
    params=snakemake.params.ablation,
    chunk_size=snakemake.params.chunk_size,
    label=snakemake.params.label,
)
