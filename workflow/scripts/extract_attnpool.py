from clipmech.runner import run
from clipmech.stages.extract_attnpool import extract_attnpool

run(extract_attnpool, snakemake)
