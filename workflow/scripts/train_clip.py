from clipmech.runner import run
from clipmech.stages.train_clip import train_clip

run(train_clip, snakemake)
