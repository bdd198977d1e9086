from clipmech.runner import run
from clipmech.stages.binding_benchmark import binding_benchmark

run(binding_benchmark, snakemake)
