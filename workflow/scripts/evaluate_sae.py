from clipmech.runner import run
from clipmech.stages.evaluate_sae import evaluate_sae

run(evaluate_sae, snakemake)
