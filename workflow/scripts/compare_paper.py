from clipmech.runner import run
from clipmech.stages.compare_paper import compare_paper

run(compare_paper, snakemake)
