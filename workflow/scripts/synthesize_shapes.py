from clipmech.logs import to_file
from clipmech.stages import dataset

to_file(snakemake.log[0])
dataset.synthesize_shapes(snakemake.output.data, snakemake.params.spec)
