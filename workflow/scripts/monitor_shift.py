from clipmech.runner import run
from clipmech.stages.monitor_shift import monitor_shift

run(monitor_shift, snakemake)
