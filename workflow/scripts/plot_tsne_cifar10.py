from clipmech.runner import run
from clipmech.stages.plot_tsne_cifar10 import plot_tsne_cifar10

run(plot_tsne_cifar10, snakemake)
