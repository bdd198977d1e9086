import ast
import difflib
import importlib.util
import json
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
# patching.models and .datasets default to the analysed models and every pairs dataset.
PAIRS_DATASETS = sorted(
    name for name, entry in config["datasets"].items() if entry["kind"] == "pairs"
)
if config["patching"]["models"] is None:
    config["patching"]["models"] = list(config["analyses"]["models"])
if config["patching"]["datasets"] is None:
    config["patching"]["datasets"] = PAIRS_DATASETS
check_names("models", config["patching"]["models"], config["models"], "patching.models")
check_names(
    "pairs datasets",
    config["patching"]["datasets"],
    PAIRS_DATASETS,
    "patching.datasets",
)
# sae.models defaults to the analysed models.
if config["sae"]["models"] is None:
    config["sae"]["models"] = list(config["analyses"]["models"])
check_names("models", config["sae"]["models"], config["models"], "sae.models")


def sae_sites_by_model():
    """sae.sites per model of sae.models: the one list for each, or each model's own list of a mapping."""
    sites, models = config["sae"]["sites"], config["sae"]["models"]
    if not isinstance(sites, dict):
        return {model: list(sites) for model in models}
    check_names("models", list(sites), models, "sae.sites (a mapping of sae.models)")
    missing = [model for model in models if model not in sites]
    if missing:
        raise ValueError(
            f"sae.sites maps models to their sites but has no entry for {missing} of sae.models = "
            f"{models}: add one (an empty list for no SAE)"
        )
    return {model: list(sites[model]) for model in models}


SAE_SITES = sae_sites_by_model()
ALL_SAE_SITES = sorted({site for sites in SAE_SITES.values() for site in sites})

# --- Cross-key checks (parse time) --------------------------------------------------------------
# The schema checks each key alone; these check keys against each other and against open_clip's
# tables, so that `snakemake -n` fails with the key and the allowed values before any job runs
# (rather than a job failing after hours of training). open_clip's architecture and pretrained
# tables are read from its installed files, without importing it (importing open_clip imports
# torch: about 3 s more per parse; reading the files takes about 0.03 s).

CLIPMECH_MODEL_CONFIGS = (
    Path(workflow.basedir) / "src" / "clipmech" / "models" / "model_configs"
)
OPEN_CLIP_SCHEMES = ("hf-hub:", "local-dir:")  # carry their own config and weights
# Files of torchvision's CIFAR-10 layout, per split (clipmech.data.cifar10 reads them).
CIFAR10_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
CIFAR10_SIZES = {"train": 50000, "test": 10000}


def open_clip_dir():
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ValueError("open_clip is not installed: see environment.yml")
    return Path(spec.origin).parent


def open_clip_architectures():
    """open_clip.list_models() once clipmech.models.loading has added its configs: the config files."""
    dirs = [open_clip_dir() / "model_configs", CLIPMECH_MODEL_CONFIGS]
    return sorted(path.stem for d in dirs for path in d.glob("*.json"))


def _pretrained_tags(node, named):
    """{tag: quick_gelu} of a `dict(tag=_pcfg(...), ...)` or `{...}` node or a name bound to one."""
    if isinstance(node, ast.Name):
        return named.get(node.id)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
    ):
        items = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
    elif isinstance(node, ast.Dict):
        items = [
            (key.value, value)
            for key, value in zip(node.keys, node.values)
            if isinstance(key, ast.Constant)
        ]
    else:
        return None
    return {
        tag: isinstance(value, ast.Call)
        and any(
            kw.arg == "quick_gelu" and getattr(kw.value, "value", None) is True
            for kw in value.keywords
        )
        for tag, value in items
    }


def open_clip_pretrained_tags():
    """{architecture: tags} as open_clip.list_pretrained() gives them, from open_clip/pretrained.py's
    `_PRETRAINED` table (its `-quickgelu` twins included); tests/workflow/test_config_checks.py
    compares it with open_clip's own list."""
    tree = ast.parse((open_clip_dir() / "pretrained.py").read_text())
    named, table = {}, {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            continue
        if stmt.targets[0].id == "_PRETRAINED" and isinstance(stmt.value, ast.Dict):
            for key, value in zip(stmt.value.keys, stmt.value.values):
                tags = _pretrained_tags(value, named)
                if isinstance(key, ast.Constant) and tags is not None:
                    table[key.value] = tags
        else:
            tags = _pretrained_tags(stmt.value, named)
            if tags is not None:
                named[stmt.targets[0].id] = tags
    quick = {
        f"{model}-quickgelu": [tag for tag, q in tags.items() if q]
        for model, tags in table.items()
    }
    tags = {model: sorted(tags) for model, tags in table.items()}
    tags.update({model: sorted(t) for model, t in quick.items() if t})
    return tags


def allowed(value, valid, n=8):
    """The valid values, or, when there are many, the n closest to `value` and the count."""
    valid = sorted(valid)
    if len(valid) <= n:
        return ", ".join(valid)
    close = difflib.get_close_matches(str(value), valid, n=n, cutoff=0.0)
    return f"{', '.join(close)} (closest of {len(valid)})"


def check_model(name, entry, architectures, pretrained_tags):
    key = f"models.{name}"
    has_pretrained, has_train = "pretrained" in entry, "train" in entry
    if has_pretrained == has_train:
        raise ValueError(
            f"{key} needs exactly one of `pretrained` (an open_clip tag, a local checkpoint path, "
            "or null for random weights) and `train` (the pipeline trains it), got "
            + ("both" if has_train else "neither")
        )
    if "sha256" in entry and not is_local_checkpoint(entry.get("pretrained")):
        raise ValueError(
            f"{key}.sha256 checks a local checkpoint file, but {key}.pretrained is "
            f"{entry.get('pretrained')!r}; drop `sha256`, or point `pretrained` at the file "
            "(a pipeline-trained checkpoint is checked against its training record)"
        )
    arch = entry["architecture"]
    if arch.startswith(OPEN_CLIP_SCHEMES):
        return
    if arch not in architectures:
        raise ValueError(
            f"{key}.architecture = {arch!r} is not an open_clip architecture; valid: "
            f"{allowed(arch, architectures)} (open_clip.list_models() after "
            "import clipmech.models.loading)"
        )
    tag = entry.get("pretrained")
    if tag is None or is_local_checkpoint(tag):
        return
    tags = pretrained_tags.get(arch, [])
    if tag.lower().replace("-", "_") not in tags:  # open_clip normalises tags so
        raise ValueError(
            f"{key}.pretrained = {tag!r} is neither an open_clip pretrained tag of {arch} nor "
            "a checkpoint path (a path has a '/' or a .pt/.pth/.bin/.safetensors/.npz suffix); "
            + (
                f"tags of {arch}: {allowed(tag, tags)}"
                if tags
                else f"{arch} has no open_clip weights: use a checkpoint path, null, or `train`"
            )
        )


def check_object_counts(key, entry, default_max):
    low, high = entry.get("min_objects", 1), entry.get("max_objects", default_max)
    if low > high:
        raise ValueError(
            f"{key}.min_objects = {low} exceeds {key}.max_objects = {high}: "
            "the object counts run from min_objects to max_objects"
        )


def dataset_size(name):
    """Images of a dataset: n_per_count per object count (Shapes), n_per_split per split (shift),
    5 per base scene (pairs: the base and its 4 variants)."""
    entry = config["datasets"][name]
    if entry["kind"] == "shift":
        return entry.get("n_per_split", 100) * len(entry.get("shares", [0] * 5))
    if entry["kind"] == "pairs":
        return 5 * entry["n_scenes"]
    return entry["n_per_count"] * (entry["max_objects"] - entry["min_objects"] + 1)


def check_cifar10(section, perplexity):
    root = section["root"]
    batches = Path(root) / "cifar-10-batches-py"
    missing = [
        f
        for f in ["batches.meta", *CIFAR10_FILES[section["split"]]]
        if not (batches / f).is_file()
    ]
    if missing:
        raise ValueError(
            f"cifar10.root = {root!r} must hold torchvision's cifar-10-batches-py/ with "
            f"{', '.join(['batches.meta', *CIFAR10_FILES[section['split']]])} "
            f"(split {section['split']!r}); missing in {batches}: {', '.join(missing)} "
            "(set cifar10.root to null to skip the CIFAR-10 map)"
        )
    n = min(section["n_images"], CIFAR10_SIZES[section["split"]])
    if perplexity >= n:
        raise ValueError(
            f"tsne.perplexity = {perplexity} must be below the {n} CIFAR-10 images of "
            "cifar10.n_images (t-SNE needs perplexity < number of images)"
        )


def check_config():
    architectures = open_clip_architectures()
    pretrained_tags = open_clip_pretrained_tags()
    for name, entry in config["models"].items():
        check_model(name, entry, architectures, pretrained_tags)
        if "train" in entry:
            check_object_counts(f"models.{name}.train", entry["train"], 5)
    for name, entry in config["datasets"].items():
        check_object_counts(
            f"datasets.{name}", entry, 3 if entry["kind"] == "shift" else 5
        )
    k, perplexity = config["selectivity"]["k"], config["tsne"]["perplexity"]
    for name in config["analyses"]["datasets"]:
        n = dataset_size(name)
        if k > n:
            raise ValueError(
                f"selectivity.k = {k} exceeds the {n} images of dataset {name!r} "
                "(k must be at most the number of images)"
            )
        if perplexity >= n:
            raise ValueError(
                f"tsne.perplexity = {perplexity} must be below the {n} images of dataset "
                f"{name!r} (t-SNE needs perplexity < number of images)"
            )
    if config["cifar10"]["root"] is not None:
        check_cifar10(config["cifar10"], perplexity)
    text = config["decomposition"]["text"]
    too_large = [m for m in text["m_values"] if m > text["n_components"]]
    if config["decomposition"]["models"] and too_large:
        raise ValueError(
            f"decomposition.text.m_values {too_large} exceed decomposition.text.n_components = "
            f"{text['n_components']}: each sparsity must be at most n_components"
        )


def extraction_stores(site):
    """Whether `extraction.sites` stores a site `<tower>.blocks.<l>.<hook>` (the schema checks its
    form): listed, or a `*` pattern covering its layer (vision: a layer of `extraction.layers`).
    """
    tower, _, layer, hook = site.split(".", 3)
    extraction = config["extraction"]
    if tower == "visual" and hook == "hook_mlp_out" and not extraction["save_tokens"]:
        return False
    layers = extraction["layers"]
    pattern = f"{tower}.blocks.*.{hook}"
    covered = tower == "text" or layers is None or int(layer) in layers
    return site in extraction["sites"] or (pattern in extraction["sites"] and covered)


def check_sae_sites():
    missing = [site for site in ALL_SAE_SITES if not extraction_stores(site)]
    if missing:
        raise ValueError(
            f"sae.sites {missing} are not stored by extraction.sites = {config['extraction']['sites']} "
            f"(extraction.layers = {config['extraction']['layers']}, save_tokens = "
            f"{config['extraction']['save_tokens']}): add them to extraction.sites so the activation "
            "store holds them (hook_mlp_out also needs extraction.save_tokens: true)"
        )


# --- MiCLIP (methods.md Sec. 9) -------------------------------------------------------------------
MICLIP_TRANSFORMER_HOOKS = (
    "hook_resid_pre",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)


def architecture_layers(arch):
    """(is_resnet, number of vision blocks) of an architecture from its open_clip config file, or None
    for a hub / local-dir architecture (checked when the model loads)."""
    if arch.startswith(OPEN_CLIP_SCHEMES):
        return None
    for directory in (CLIPMECH_MODEL_CONFIGS, open_clip_dir() / "model_configs"):
        path = directory / f"{arch}.json"
        if path.is_file():
            layers = json.loads(path.read_text())["vision_cfg"]["layers"]
            if isinstance(layers, list):
                return True, len(layers)
            return False, int(layers)
    return None


def miclip_sites(model):
    """The valid MiCLIP sites of a model, or None when its architecture is not known at parse time."""
    facts = architecture_layers(config["models"][model]["architecture"])
    if facts is None:
        return None
    is_resnet, n_layers = facts
    hooks = ("hook_resid_post",) if is_resnet else MICLIP_TRANSFORMER_HOOKS
    return [f"visual.blocks.{l}.{hook}" for l in range(n_layers) for hook in hooks]


def check_miclip():
    section = config["miclip"]
    if not section["units"]:
        return
    check_names("models", list(section["units"]), config["models"], "miclip.units")
    check_names("models", [section["reference"]], config["models"], "miclip.reference")
    if section["dataset"] is not None:
        check_names(
            "shapes datasets",
            [section["dataset"]],
            datasets_of_kind("shapes"),
            "miclip.dataset",
        )
    elif config["datasets"][config["analyses"]["datasets"][0]]["kind"] != "shapes":
        raise ValueError(
            f"miclip.dataset is null and analyses.datasets[0] = "
            f"{config['analyses']['datasets'][0]!r} is not a Shapes dataset; name one of "
            f"{', '.join(datasets_of_kind('shapes'))}"
        )
    if sorted(section["losses"]) != ["both", "input", "output"]:
        raise ValueError(
            f"miclip.losses = {section['losses']}: the evaluation compares all three losses, "
            "list both, input and output"
        )
    for model, unit_sets in section["units"].items():
        valid = miclip_sites(model)
        for entry in unit_sets:
            site, kind = entry["site"], entry["kind"]
            if valid is not None and site not in valid:
                raise ValueError(
                    f"miclip.units.{model}: unknown site {site!r}; valid sites are: "
                    f"{allowed(site, valid)}"
                )
            if kind == "sae" and site not in SAE_SITES.get(model, []):
                raise ValueError(
                    f"miclip.units.{model}: kind sae at {site} needs the SAE of rule train_sae "
                    f"there, but sae.models = {config['sae']['models']} and sae.sites = "
                    f"{config['sae']['sites']}; add {model} and {site} to them"
                )


def miclip_models():
    """The target models of MiCLIP and its reference (none when `miclip.units` is empty)."""
    if not config["miclip"]["units"]:
        return []
    return [*config["miclip"]["units"], config["miclip"]["reference"]]


check_config()
check_sae_sites()

# Models some analysis runs; of these, those with a `train` block are trained by the pipeline
# (a configured model that no analysis uses is neither trained nor loaded).
USED = sorted(
    set(config["analyses"]["models"])
    | set(config["decomposition"]["models"])
    | set(config["patching"]["models"])
    | {model for model, sites in SAE_SITES.items() if sites}
    | set(miclip_models())
)
TRAINED = [name for name in USED if "train" in config["models"][name]]


def datasets_of_kind(kind):
    return sorted(
        name for name, entry in config["datasets"].items() if entry["kind"] == kind
    )


check_miclip()


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

# Causal tracing (methods.md Sec. 8) of each patching model on each pairs dataset.
PATCHINGS = [
    (m, d) for m in config["patching"]["models"] for d in config["patching"]["datasets"]
]


# Top-k SAEs (methods.md Sec. 7) of each SAE model at each SAE site, on the first analysed dataset.
SAES = [(m, site) for m, sites in SAE_SITES.items() for site in sites]
SAE_DATASET = config["analyses"]["datasets"][0]


# The atlas (methods.md Sec. 10): atlas.models defaults to the analysed and then the decomposed models,
# atlas.dataset to the first analysed dataset.
ATLAS_SOURCES = list(
    dict.fromkeys(config["analyses"]["models"] + config["decomposition"]["models"])
)
if config["atlas"]["models"] is None:
    config["atlas"]["models"] = ATLAS_SOURCES
check_names(
    "analysed or decomposed models",
    config["atlas"]["models"],
    ATLAS_SOURCES,
    "atlas.models",
)
ATLAS_DATASET = config["atlas"]["dataset"] or config["analyses"]["datasets"][0]
check_names(
    "analysed datasets",
    [ATLAS_DATASET],
    config["analyses"]["datasets"],
    "atlas.dataset",
)


def gpu_request():
    """The `gpu` resource of the steps that run a model on `extraction.device`, none on `cpu`,
    else 1 (SLURM: --gpus=1; gpu=0 adds no GPU option), so a CPU-only cluster runs the whole DAG.
    """
    return 0 if config["extraction"]["device"] == "cpu" else 1


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


def patching_params(wildcards):
    """The patching section without what only the DAG or the concept rules use, and the run's seed."""
    params = {
        key: value
        for key, value in config["patching"].items()
        if key not in ("models", "datasets", "concepts")
    }
    return {**params, "seed": config["seed"]}


def sae_store(wildcards):
    """The activation store an SAE trains on: its model's on the first analysed dataset."""
    return f"results/activations/{wildcards.model}/{SAE_DATASET}.zarr"


def sae_params(wildcards):
    """The sae section without what only the DAG or the evaluation uses."""
    return {
        key: value
        for key, value in config["sae"].items()
        if key not in ("models", "sites", "evaluate")
    }


def sae_dataset_dir(wildcards):
    """The dataset of the store an SAE trains on (its masks and objects ground the alignment)."""
    return f"results/datasets/{SAE_DATASET}/data"


def sae_label(wildcards):
    return f"{wildcards.model} at {wildcards.site} on {SAE_DATASET}"


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


def patching_outputs(model, dataset):
    """Causal tracing of one model on one pairs dataset (methods.md Sec. 8)."""
    base = f"results/patching/{model}/{dataset}"
    return [
        f"{base}/{name}"
        for name in (
            "recovery.tsv",
            "circuit.tsv",
            "circuit_summary.tsv",
            "runs.tsv",
            "recovery_visual.png",
            "recovery_text.png",
            "heads.png",
            "circuit.png",
            "auroc.tsv",
            "auroc_summary.tsv",
            "auroc.png",
            "interventions.tsv",
            "interventions.png",
        )
    ]


def sae_outputs(model, site):
    """A top-k SAE of one model at one site (methods.md Sec. 7)."""
    base = f"results/sae/{model}/{site}"
    return [
        f"{base}/{name}"
        for name in (
            "checkpoint.pt",
            "training.tsv",
            "training.png",
            "metrics.json",
            "latents.tsv",
            "alignment.tsv",
            "histogram.png",
            "top_images.png",
        )
    ]


MICLIP_DATASET = config["miclip"]["dataset"] or config["analyses"]["datasets"][0]
MICLIP_UNITS = [
    (model, entry["site"], entry["kind"])
    for model, unit_sets in config["miclip"]["units"].items()
    for entry in unit_sets
]
MICLIP_SITES = sorted({(model, site) for model, site, _ in MICLIP_UNITS})


def miclip_dataset_dir(wildcards):
    return f"results/datasets/{MICLIP_DATASET}/data"


def miclip_reference_text(wildcards):
    return f"results/miclip/reference/{config['miclip']['reference']}.npz"


def miclip_reference_entry(wildcards):
    return model_entry(config["miclip"]["reference"])


def miclip_reference_checkpoint(wildcards):
    pretrained = model_entry(config["miclip"]["reference"]).get("pretrained")
    return [pretrained] if is_local_checkpoint(pretrained) else []


def miclip_sae_input(wildcards):
    """The SAE an `sae` unit set reads; none for neurons."""
    if wildcards.kind == "sae":
        return [f"results/sae/{wildcards.model}/{wildcards.site}/checkpoint.pt"]
    return []


def miclip_train_params(wildcards):
    keys = ("losses", "seeds", "steps", "batch_size", "lr", "temperature")
    return {key: config["miclip"][key] for key in keys}


def miclip_eval_params(wildcards):
    keys = ("seeds", "tau", "interventions", "clip_dissect", "netdissect")
    params = {key: config["miclip"][key] for key in keys}
    return {**params, "batch_size": config["miclip"]["batch_size_eval"]}


def miclip_k_top(wildcards):
    return config["miclip"]["k_top"] or config["selectivity"]["k"]


def miclip_label(wildcards):
    return f"{wildcards.model} at {wildcards.site} on {MICLIP_DATASET}"


def miclip_outputs(model, site, kind):
    """MiCLIP of one unit set (methods.md Sec. 9), with its site's encoders."""
    base = f"results/miclip/{model}/{site}"
    return [
        f"{base}/{name}" for name in ("encoders.pt", "training.tsv", "training.png")
    ] + [
        f"{base}/{kind}/{name}"
        for name in (
            "descriptions.tsv",
            "localisation.tsv",
            "interventions.tsv",
            "description_accuracy.tsv",
            "delta_acc.tsv",
            "ablation.tsv",
            "delta_acc.png",
            "descriptions.png",
        )
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
    for model, dataset in PATCHINGS:
        outputs += patching_outputs(model, dataset)
    for model, site in SAES:
        outputs += sae_outputs(model, site)
    for model, site, kind in MICLIP_UNITS:
        outputs += miclip_outputs(model, site, kind)
    for model in config["atlas"]["models"]:
        outputs += atlas_outputs(model)
    return outputs + cifar10_outputs() + pascal_context_outputs()


def atlas_sae_sites(wildcards):
    """The SAE sites of a model's atlas: its SAEs, when it is an analysed ViT (its store holds the sites)."""
    model = wildcards.model
    if model in config["analyses"]["models"]:
        return SAE_SITES.get(model, [])
    return []


def atlas_miclip_units(wildcards):
    """The MiCLIP unit sets of a model ({site, kind}), from `miclip.units`."""
    return list(config["miclip"]["units"].get(wildcards.model, []))


def atlas_inputs(wildcards):
    """Named inputs of a model's atlas (clipmech.stages.build_atlas): only the results its analyses make."""
    model, dataset = wildcards.model, ATLAS_DATASET
    inputs = {"data": f"results/datasets/{dataset}/data"}
    if model in config["analyses"]["models"]:
        inputs["store"] = f"results/activations/{model}/{dataset}.zarr"
        inputs["units"] = f"results/selectivity/{model}/{dataset}/units.tsv"
    if model in config["decomposition"]["models"]:
        base = f"results/decomposition/{model}/{dataset}"
        inputs["attnpool"] = f"results/attnpool/{model}/{dataset}.zarr"
        inputs["pairs"] = f"{base}/pairs.tsv"
        inputs["words"] = f"{base}/words.tsv"
    if model in config["patching"]["models"] and config["patching"]["datasets"]:
        base = f"results/patching/{model}/{config['patching']['datasets'][0]}"
        inputs["auroc"] = f"{base}/auroc.tsv"
        inputs["recovery"] = f"{base}/recovery.tsv"
    sites = atlas_sae_sites(wildcards)
    if sites:
        inputs["sae_checkpoints"] = [
            f"results/sae/{model}/{site}/checkpoint.pt" for site in sites
        ]
        inputs["sae_latents"] = [
            f"results/sae/{model}/{site}/latents.tsv" for site in sites
        ]
    units = atlas_miclip_units(wildcards)
    for name in ("descriptions", "interventions", "localisation") if units else ():
        inputs[f"miclip_{name}"] = [
            f"results/miclip/{model}/{unit['site']}/{unit['kind']}/{name}.tsv"
            for unit in units
        ]
    return inputs


def atlas_params():
    """The atlas section without what only the DAG uses, and Algorithm 1's k and reduction."""
    params = {
        key: value
        for key, value in config["atlas"].items()
        if key not in ("models", "dataset")
    }
    selectivity = config["selectivity"]
    return {**params, "k": selectivity["k"], "reduction": selectivity["reduction"]}


def atlas_outputs(model):
    """The atlas site of one model (methods.md Sec. 10) and its summary table (the report's entry)."""
    return [f"results/atlas/{model}", f"results/atlas/{model}.tsv"]
