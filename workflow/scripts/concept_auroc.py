from clipmech.runner import run
from clipmech.stages.concept_auroc import concept_auroc

run(concept_auroc, snakemake)
