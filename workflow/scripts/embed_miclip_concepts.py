from clipmech.runner import run
from clipmech.stages.embed_miclip_concepts import embed_miclip_concepts

run(embed_miclip_concepts, snakemake)
