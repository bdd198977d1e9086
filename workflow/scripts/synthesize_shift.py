from clipmech.logs import to_file
from clipmech.stages.synthesize_shift import synthesize_shift

to_file(snakemake.log[0])
synthesize_shift(
    directory=snakemake.output.data,
    params=snakemake.params.spec,
    image_size=snakemake.params.image_size,
)
