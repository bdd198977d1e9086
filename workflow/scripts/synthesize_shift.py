from clipmech.runner import run
from clipmech.stages.synthesize_shift import synthesize_shift

run(synthesize_shift, snakemake)
