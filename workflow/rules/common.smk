import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from clipmech.checkpoints import is_local_checkpoint
from clipmech.codehash import code_hash

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
ENV = "../../environment.yml"


def script_code(name):
    """Hash of the package code the script `name` runs: a param, so editing that code reruns the rule."""
    return code_hash(SCRIPTS / name)


def check_names(kind, requested, configured):
    unknown = [name for name in requested if name not in configured]
    if unknown:
        raise ValueError(
            f"analyses.{kind} names unknown {kind} {unknown}; configured {kind} are: "
            + ", ".join(sorted(configured))
        )


check_names("models", config["analyses"]["models"], config["models"])
check_names("datasets", config["analyses"]["datasets"], config["datasets"])

TRAINED = sorted(name for name, entry in config["models"].items() if "train" in entry)
ANALYSES = [
    (m, d) for m in config["analyses"]["models"] for d in config["analyses"]["datasets"]
]


def checkpoint_path(model):
    return f"results/models/{model}/checkpoint.pt"


def model_entry(model):
    """The model's config entry; a pipeline-trained model's `pretrained` is its checkpoint."""
    entry = {k: v for k, v in config["models"][model].items() if k != "train"}
    if model in TRAINED:
        entry["pretrained"] = checkpoint_path(model)
    return entry


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
    return outputs + cifar10_outputs()
