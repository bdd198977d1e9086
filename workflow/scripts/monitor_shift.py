from clipmech.logs import to_file
from clipmech.stages.monitor_shift import monitor_shift

to_file(snakemake.log[0])
monitor_shift(
    store=snakemake.input.store,
    splits_dir=snakemake.input.data,
    text_path=snakemake.input.text,
    out=dict(snakemake.output),
    params=snakemake.params.shift,
    chunk_size=snakemake.params.chunk_size,
    label=snakemake.params.label,
)
