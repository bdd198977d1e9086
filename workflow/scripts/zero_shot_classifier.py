from clipmech.runner import run
from clipmech.stages.zero_shot_classifier import zero_shot_classifier

run(zero_shot_classifier, snakemake)
