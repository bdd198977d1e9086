from clipmech.logs import to_file
from clipmech.stages.tsne_cifar10 import tsne_cifar10

to_file(snakemake.log[0])
tsne_cifar10(
    name=snakemake.wildcards.model,
    model_entry=snakemake.params.model,
    out=snakemake.output,
    cifar=snakemake.params.cifar10,
    params=snakemake.params.tsne,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
)
