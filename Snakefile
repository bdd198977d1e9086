import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# Config: the user's --configfile(s) alone, or config/config.yaml of the working directory when
# none is given (never both: the default is not merged under a user's file, so a file plans the
# same in the repository root as anywhere else). Keys a file leaves out get the schema's defaults,
# and --config key=value overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# This workflow's package first (a copy of the workflow runs its own copy of the package), here and in
# every job: a job imports the code its code hash covers, not a package installed from another checkout.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from clipmech.codehash import export_package

export_package()

from clipmech.config import load_config, read_yaml

# Snakemake has read the config files itself, keeping the last value of a key written twice: read them
# again with the strict loader, so that a duplicated key stops the run here, naming the key and its lines.
for path in workflow.configfiles:
    read_yaml(path)

# Validated against workflow/schemas/config.schema.yaml, defaults filled, normalised and
# cross-checked: a config mistake stops here, naming the key and the allowed values, before any
# job is planned.
CONFIG = load_config(config)

# The stores' estimated size (clipmech.storage; `python -m clipmech plan` prints it): over
# storage.budget_gb the DAG is not built, and the message names the largest stores and what shrinks them.
if CONFIG.storage.budget_gb is not None:
    from clipmech.storage import check_budget, storage_plan

    check_budget(storage_plan(CONFIG), CONFIG.storage.budget_gb)

# Every rule's mem_mb and runtime, functions of the config and the job's wildcards (clipmech.resources).
from clipmech.resources import RuleResources

RESOURCES = RuleResources(CONFIG)


include: "workflow/rules/common.smk"
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
include: "workflow/rules/patching.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/miclip.smk"
include: "workflow/rules/atlas.smk"
include: "workflow/rules/zeroshot.smk"
include: "workflow/rules/papers.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        expand("results/papers/{paper}.tsv", paper=PAPERS),
