from clipmech.logs import to_file
from clipmech.stages.train_miclip import train_miclip

to_file(snakemake.log[0])
train_miclip(
    probe=snakemake.input.probe,
    concepts=snakemake.input.concepts,
    out=snakemake.output,
    params=snakemake.params.train,
    label=snakemake.params.label,
    threads=snakemake.threads,
)
