from clipmech.runner import run
from clipmech.stages.ablate_components import ablate_components

run(ablate_components, snakemake)
