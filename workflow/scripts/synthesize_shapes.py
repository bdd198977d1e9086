from clipmech.logs import to_file
from clipmech.stages.synthesize_shapes import synthesize_shapes

to_file(snakemake.log[0])
synthesize_shapes(
    out_dir=snakemake.output.data,
    params=snakemake.params.spec,
)
