from clipmech.runner import run
from clipmech.stages.extract_activations import extract_activations_part

run(extract_activations_part, snakemake)
