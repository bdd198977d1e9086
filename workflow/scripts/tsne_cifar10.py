from clipmech.runner import run
from clipmech.stages.tsne_cifar10 import tsne_cifar10

run(tsne_cifar10, snakemake)
