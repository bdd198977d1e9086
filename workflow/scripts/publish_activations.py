from clipmech.runner import run
from clipmech.stages.extract_activations import publish_activations

run(publish_activations, snakemake)
