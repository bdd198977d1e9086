from clipmech.runner import run
from clipmech.stages.build_atlas import build_atlas

run(build_atlas, snakemake)
