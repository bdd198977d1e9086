from clipmech.logs import to_file
from clipmech.stages import decomposition

to_file(snakemake.log[0])
decomposition.synthesize_shift(
    snakemake.output.data,
    snakemake.params.shift,
    snakemake.params.image_size,
)
