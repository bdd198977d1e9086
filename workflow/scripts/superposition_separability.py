from clipmech.runner import run
from clipmech.stages.superposition_separability import superposition_separability

run(superposition_separability, snakemake)
