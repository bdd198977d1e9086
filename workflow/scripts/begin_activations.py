from clipmech.runner import run
from clipmech.stages.extract_activations import begin_activations

run(begin_activations, snakemake)
