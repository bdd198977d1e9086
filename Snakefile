from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=name_pattern(config["models"]),
    dataset=name_pattern(config["datasets"]),


include: "workflow/rules/datasets.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/selectivity.smk"
include: "workflow/rules/superposition.smk"
include: "workflow/rules/binding.smk"
include: "workflow/rules/gradcam.smk"
include: "workflow/rules/tsne.smk"
include: "workflow/rules/decomposition.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/monitoring.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
