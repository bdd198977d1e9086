from clipmech.logs import to_file
from clipmech.stages.plot_dataset import plot_dataset

to_file(snakemake.log[0])
plot_dataset(
    dataset_dir=snakemake.input.data,
    path=snakemake.output.preview,
)
