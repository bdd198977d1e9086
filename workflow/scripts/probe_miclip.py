from clipmech.runner import run
from clipmech.stages.probe_miclip import probe_miclip

run(probe_miclip, snakemake)
