from clipmech.runner import run
from clipmech.stages.patch_components import patch_components

run(patch_components, snakemake)
