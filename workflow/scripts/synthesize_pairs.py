from clipmech.logs import to_file
from clipmech.stages.synthesize_pairs import synthesize_pairs

to_file(snakemake.log[0])
synthesize_pairs(
    directory=snakemake.output.data,
    params=snakemake.params.spec,
)
