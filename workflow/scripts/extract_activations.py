from clipmech.runner import run
from clipmech.stages.extract_activations import extract_activations

run(extract_activations, snakemake)
