from clipmech.runner import run
from clipmech.stages.train_miclip import train_miclip

run(train_miclip, snakemake)
