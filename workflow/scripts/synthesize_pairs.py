from clipmech.runner import run
from clipmech.stages.synthesize_pairs import synthesize_pairs

run(synthesize_pairs, snakemake)
