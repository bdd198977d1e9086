from clipmech.runner import run
from clipmech.stages.decompose_text import decompose_text

run(decompose_text, snakemake)
