from clipmech.runner import run
from clipmech.stages.embed_text import embed_text

run(embed_text, snakemake)
