from clipmech.runner import run
from clipmech.stages.decompose_attnpool import decompose_attnpool

run(decompose_attnpool, snakemake)
