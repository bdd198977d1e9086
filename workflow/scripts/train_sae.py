from clipmech.runner import run
from clipmech.stages.train_sae import train_sae

run(train_sae, snakemake)
