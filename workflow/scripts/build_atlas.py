from clipmech.logs import to_file
from clipmech.stages.build_atlas import build_atlas

to_file(snakemake.log[0])
build_atlas(
    model=snakemake.wildcards.model,
    dataset=snakemake.params.dataset,
    inputs={name: value if isinstance(value, str) else list(value) for name, value in snakemake.input.items()},
    out=snakemake.output.site,
    summary=snakemake.output.summary,
    params=snakemake.params.atlas,
    sae_sites=snakemake.params.sae_sites,
    miclip_units=snakemake.params.miclip_units,
)
