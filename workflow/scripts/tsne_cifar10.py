from clipmech.logs import to_file
from clipmech.stages import tsne

to_file(snakemake.log[0])
tsne.tsne_cifar10(
    snakemake.wildcards.model,
    snakemake.params.model,
    snakemake.output,
    snakemake.params.cifar10,
    snakemake.params.tsne,
    snakemake.params.seed,
    snakemake.params.device,
    snakemake.params.batch_size,
    snakemake.threads,
)
