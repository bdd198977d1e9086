from clipmech.runner import run
from clipmech.stages.zero_shot import zero_shot

run(zero_shot, snakemake)
