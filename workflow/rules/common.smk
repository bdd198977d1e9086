import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from clipmech.checkpoints import is_local_checkpoint
from clipmech.codehash import code_hash

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
ENV = "../../environment.yml"


def canonical(value):
    """The config value with every mapping's keys sorted, recursively."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


# Snakemake's params trigger compares dicts with their key order, so the same values written in
# another order would rerun everything: parameters are built from a key-sorted config.
_sorted_config = canonical(dict(config))
config.clear()
config.update(_sorted_config)


def script_code(name):
    """Hash of the package code the script `name` runs: a param, so editing that code reruns the rule."""
    return code_hash(SCRIPTS / name)


def check_names(kind, requested, configured, key=None):
    unknown = [name for name in requested if name not in configured]
    if unknown:
        where = key or f"analyses.{kind}"
        valid = ", ".join(sorted(configured))
        raise ValueError(
            f"{where} names unknown {kind} {unknown}; configured {kind} are: {valid}"
        )


check_names("models", config["analyses"]["models"], config["models"])
check_names("datasets", config["analyses"]["datasets"], config["datasets"])
check_names(
    "models",
    config["decomposition"]["models"],
    config["models"],
    "decomposition.models",
)

TRAINED = sorted(name for name, entry in config["models"].items() if "train" in entry)


def datasets_of_kind(kind):
    return sorted(
        name for name, entry in config["datasets"].items() if entry["kind"] == kind
    )


# A dataset of kind `shift` holds the distribution-shift splits of its `base` (a Shapes dataset),
# drawn at the base's image size; the decomposition of the base is monitored on them.
SHIFT_OF = {}
for name in datasets_of_kind("shift"):
    base = config["datasets"][name]["base"]
    check_names(
        "shapes datasets", [base], datasets_of_kind("shapes"), f"datasets.{name}.base"
    )
    if base in SHIFT_OF:
        raise ValueError(
            f"datasets {SHIFT_OF[base]} and {name} are both shift splits of {base}: "
            "declare one shift dataset per base"
        )
    SHIFT_OF[base] = name

ANALYSES = [
    (m, d) for m in config["analyses"]["models"] for d in config["analyses"]["datasets"]
]
# CLIP-ResNet models decomposed into neuron-head pairs (methods.md Sec. 5), on every dataset.
DECOMPOSITIONS = [
    (m, d)
    for m in config["decomposition"]["models"]
    for d in config["analyses"]["datasets"]
]


def name_pattern(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in sorted(names)) or "(?!)"


def reported(path, caption, category, subcategory="{model} on {dataset}"):
    """An output shown in the report, captioned by workflow/report/<caption>."""
    return report(
        path,
        caption=f"../report/{caption}",
        category=category,
        subcategory=subcategory,
    )


def pair_label(wildcards):
    """Figure title prefix of a model on a dataset."""
    return f"{wildcards.model} on {wildcards.dataset}"


def model_label(wildcards):
    return wildcards.model


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def shift_image_size(wildcards):
    """Shift splits are drawn at the image size of their base dataset."""
    return config["datasets"][dataset_spec(wildcards)["base"]]["image_size"]


def shift_store(wildcards):
    """The attention-pool store of the model on the shift splits of the dataset."""
    return f"results/attnpool/{wildcards.model}/{SHIFT_OF[wildcards.dataset]}.zarr"


def shift_data(wildcards):
    return f"results/datasets/{SHIFT_OF[wildcards.dataset]}/data"


def architecture(wildcards):
    return config["models"][wildcards.model]["architecture"]


def checkpoint_path(model):
    return f"results/models/{model}/checkpoint.pt"


def model_entry(model):
    """The model's config entry; a pipeline-trained model's `pretrained` is its checkpoint."""
    entry = {k: v for k, v in config["models"][model].items() if k != "train"}
    if model in TRAINED:
        entry["pretrained"] = checkpoint_path(model)
    return entry


def model_params(wildcards):
    return model_entry(wildcards.model)


def checkpoint_input(wildcards):
    """The checkpoint a model loads, when it is a file: trained here or a local path."""
    pretrained = model_entry(wildcards.model).get("pretrained")
    return [pretrained] if is_local_checkpoint(pretrained) else []


def train_params(wildcards):
    return config["models"][wildcards.model]["train"]


def selectivity_outputs(model, dataset):
    base = f"results/selectivity/{model}/{dataset}"
    return [
        f"{base}/units.tsv",
        f"{base}/entropy_by_layer.png",
        f"{base}/top_images.png",
        f"{base}/heatmaps.png",
    ]


def binding_outputs(model, dataset):
    """Superposition vs separability, binding benchmark, Grad-CAM and t-SNE of one pair."""
    return [
        f"results/superposition/{model}/{dataset}/pairs.tsv",
        f"results/superposition/{model}/{dataset}/correlations.tsv",
        f"results/superposition/{model}/{dataset}/distance.png",
        f"results/superposition/{model}/{dataset}/misclassification.png",
        f"results/binding/{model}/{dataset}/trials.tsv",
        f"results/binding/{model}/{dataset}/accuracy.tsv",
        f"results/binding/{model}/{dataset}/accuracy.png",
        f"results/gradcam/{model}/{dataset}/pointing.tsv",
        f"results/gradcam/{model}/{dataset}/summary.tsv",
        f"results/gradcam/{model}/{dataset}/examples.png",
        f"results/tsne/{model}/{dataset}/tsne.tsv",
        f"results/tsne/{model}/{dataset}/tsne.png",
    ]


def cifar10_outputs():
    """The CIFAR-10 t-SNE of every analysed model, when a local copy is configured."""
    if config["cifar10"]["root"] is None:
        logger.info(
            "cifar10.root is not set: skipping the CIFAR-10 t-SNE maps "
            "(set it to a directory holding cifar-10-batches-py/ to draw them)"
        )
        return []
    return [
        f"results/tsne/{model}/cifar10.{ext}"
        for model in config["analyses"]["models"]
        for ext in ("tsv", "png")
    ]


def decomposition_outputs(model, dataset):
    """Neuron x attention-head decomposition of one CLIP-ResNet on one dataset (methods.md Sec. 5)."""
    base = f"results/decomposition/{model}/{dataset}"
    return [
        f"{base}/{name}"
        for name in (
            "summary.json",
            "pairs.tsv",
            "norms.png",
            "ablation.tsv",
            "ablation.png",
            "words.tsv",
            "class_pairs.tsv",
            "sparse_accuracy.tsv",
            "sparse_accuracy.png",
            "tokens.tsv",
            "registers.tsv",
            "attention_sink.png",
        )
    ] + [
        f"results/segmentation/{model}/{dataset}/{name}"
        for name in ("miou.tsv", "iou.tsv", "heatmaps.png", "masks.png")
    ]


def shift_outputs(model, dataset):
    """Distribution-shift monitoring of a decomposed model on the shift splits of the dataset."""
    if dataset not in SHIFT_OF:
        logger.info(
            f"no dataset of kind shift has base {dataset}: skipping the shift monitoring of "
            f"{model} on it (declare one under datasets to run it)"
        )
        return []
    base = f"results/decomposition/{model}/{dataset}"
    return [
        f"{base}/{name}"
        for name in ("shift_splits.tsv", "shift_correlations.tsv", "shift.png")
    ]


def pascal_context_outputs():
    """PASCAL Context-59 segmentation of every decomposed model, when a local copy is configured."""
    if config["decomposition"]["pascal_context"]["root"] is None:
        if config["decomposition"]["models"]:
            logger.info(
                "decomposition.pascal_context.root is not set: skipping PASCAL Context-59 "
                "segmentation (set it to a local VOC2010 directory in mmseg's layout to run it)"
            )
        return []
    return [
        f"results/pascal-context-59/{model}/{name}"
        for model in config["decomposition"]["models"]
        for name in ("miou.tsv", "iou.tsv")
    ]


def all_outputs():
    outputs = [
        f"results/datasets/{d}/preview.png" for d in config["analyses"]["datasets"]
    ]
    for model in TRAINED:
        outputs += [
            f"results/models/{model}/metrics.json",
            f"results/models/{model}/loss_curve.png",
        ]
    for model, dataset in ANALYSES:
        outputs += selectivity_outputs(model, dataset)
        outputs += binding_outputs(model, dataset)
    for model, dataset in DECOMPOSITIONS:
        outputs += decomposition_outputs(model, dataset)
        outputs += shift_outputs(model, dataset)
    return outputs + cifar10_outputs() + pascal_context_outputs()
