from clipmech.runner import run
from clipmech.stages.evaluate_miclip import evaluate_miclip

run(evaluate_miclip, snakemake)
