from clipmech.runner import run
from clipmech.stages.intervene_concepts import intervene_concepts

run(intervene_concepts, snakemake)
