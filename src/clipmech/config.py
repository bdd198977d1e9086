"""The run's configuration: validated, normalised and cross-checked once, into frozen dataclasses.

:func:`load_config` is what the Snakefile calls at parse time on Snakemake's ``config`` (the user's
``--configfile`` or config/config.yaml, with ``--config`` overrides). It

1. validates the mapping against workflow/schemas/config.schema.yaml and fills the schema's defaults
   (as ``snakemake.utils.validate`` does), then sorts every mapping's keys: Snakemake's ``params``
   trigger compares dicts with their key order, so the same values written in another order must give
   the same parameters;
2. resolves the keys whose default is another key (``null`` in the schema): ``patching.models``,
   ``sae.models`` = ``analyses.models``; ``patching.datasets`` = every ``pairs`` dataset (a ``captions``
   dataset is traced only when named);
   ``patching.concepts.datasets`` = ``patching.datasets``;
   ``atlas.models`` = the analysed then the decomposed models (for a natural-image ``atlas.dataset``, the
   analysed models that are not decomposed); ``miclip.dataset``, ``atlas.dataset`` =
   ``analyses.datasets[0]``; and Algorithm 1's k (methods.md Sec. 2), owned by ``selectivity.k``, for
   ``miclip.k_top``, ``sae.evaluate.entropy_k`` and ``atlas.k``;
3. checks keys against each other and against open_clip's tables and model configs (tower kinds,
   depths, widths, tokens per image: :mod:`clipmech.models.catalogue`), so that ``snakemake -n`` fails
   with the key and the allowed values before any job runs, rather than a job after hours of training;
4. returns a :class:`Config`: one frozen :class:`Section` per top-level key and the :class:`Plan`, which
   models, datasets, sites and unit sets each analysis family runs on.

:func:`read_config` reads a YAML file first with :func:`read_yaml`, which refuses a key written twice
(the Snakefile re-reads Snakemake's config files with it).

Lists are tuples and free-form mappings read-only in the dataclasses; :meth:`Section.params` gives a
section back as the plain, key-sorted dict the workflow passes to its jobs. Standard library, jsonschema
and yaml only: nothing here imports torch or open_clip.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import jsonschema
import yaml

from clipmech.checkpoints import is_local_checkpoint
from clipmech.hooks.names import BLOCK_PATTERN, CHANNEL_HOOKS, block_site
from clipmech.models import catalogue

#: The config schema: every key, its type, default and description.
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Paths of what one job writes and others read, each written here once (Snakemake wildcards in braces).
#: A synthesised dataset's directory.
DATA = "results/datasets/{dataset}/data"
#: The checkpoint of a pipeline-trained model.
CHECKPOINT = "results/models/{model}/checkpoint.pt"
#: The activation store of a model on a dataset (methods.md Sec. 2).
ACTIVATIONS = "results/activations/{model}/{dataset}.zarr"
#: With extraction.parts > 1: the marker of a store's template (``<store>.begun``), the name of a part
#: (``<store>.part-<k>``, its lock ``<store>.part-<k>.lock``; clipmech.stores.base.Part) and its marker.
ACTIVATIONS_BEGUN = f"{ACTIVATIONS}.begun"
ACTIVATIONS_PART = f"{ACTIVATIONS}.part-{{part}}"
ACTIVATIONS_PART_DONE = f"{ACTIVATIONS_PART}.done"
#: The attention-pool store of a CLIP-ResNet on a dataset (methods.md Sec. 5).
ATTNPOOL = "results/attnpool/{model}/{dataset}.zarr"
#: The site activations a MiCLIP probe writes on a Shapes dataset (clipmech.miclip.probe_store).
MICLIP_PROBE_ACTS = "results/miclip/{model}/{dataset}/{site}/acts.zarr"
#: The zero-shot classifier of a model over a natural-image dataset's classes (methods.md Sec. 1.2).
CLASSIFIER = "results/zeroshot/{model}/{dataset}/classifier.npz"
#: The text embeddings of a decomposed model (rule embed_text: attribute prompts and the words of the dictionary).
TEXT = "results/text/{model}/embeddings.npz"

#: The MLP outputs of every vision block: the site pattern every activation store holds (methods.md Sec. 2).
MLP_SITES = "visual.blocks.*.hook_mlp_out"


# --- Sections ----------------------------------------------------------------------------------------


def _frozen(value):
    """A YAML value with lists as tuples and mappings read-only, recursively."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


def _plain(value):
    """The inverse of :func:`_frozen`: lists and key-sorted dicts (sections as their :meth:`~Section.params`)."""
    if isinstance(value, Section):
        return value.params()
    if isinstance(value, Mapping):
        return {key: _plain(value[key]) for key in sorted(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Section:
    """A mapping of the config with a schema: one field per key, defaults as in the schema."""

    @classmethod
    def from_mapping(cls, values: Mapping) -> Section:
        """The section of a validated mapping (unknown keys raise TypeError); subsections recursively."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            sub = f.default_factory
            if isinstance(sub, type) and issubclass(sub, Section):
                kwargs[f.name] = sub.from_mapping(values[f.name])
            else:
                kwargs[f.name] = _frozen(values[f.name])
        return cls(**kwargs)

    def params(self, *exclude: str) -> dict:
        """The section as a plain dict with sorted keys (lists, dicts), without the keys in ``exclude``:
        the value a job's ``params`` gets, equal to the config's own mapping."""
        names = sorted(f.name for f in dataclasses.fields(self))
        return {name: _plain(getattr(self, name)) for name in names if name not in exclude}

    def pick(self, *names: str) -> dict:
        """The keys `names` of the section, in this order, as plain values (see :meth:`params`).

        Raises
        ------
        AttributeError
            If the section has no such key.
        """
        return {name: _plain(getattr(self, name)) for name in names}


@dataclass(frozen=True, kw_only=True)
class Shapes(Section):
    """A Shapes dataset synthesised by the pipeline (methods.md Sec. 1)."""

    kind: str = "shapes"
    n_per_count: int = 100
    image_size: int = 224
    min_objects: int = 1
    max_objects: int = 5
    distinct_attributes: bool = True
    seed: int = 0

    @property
    def n_images(self) -> int:
        """n_per_count images per object count."""
        return self.n_per_count * (self.max_objects - self.min_objects + 1)


@dataclass(frozen=True, kw_only=True)
class Shift(Section):
    """The distribution-shift splits of the Shapes dataset ``base``, drawn at its image size (methods.md Sec. 5)."""

    kind: str = "shift"
    base: str
    concepts: tuple[str, ...] = ("red", "square")
    shares: tuple[tuple[float, ...], ...] = ((0.1, 0.5), (0.3, 0.6), (0.5, 0.3), (0.7, 0.2), (0.9, 0.4))
    n_per_split: int = 100
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0

    @property
    def n_images(self) -> int:
        """n_per_split images per split."""
        return self.n_per_split * len(self.shares)


@dataclass(frozen=True, kw_only=True)
class Pairs(Section):
    """Shapes minimal pairs for causal tracing (methods.md Sec. 8)."""

    kind: str = "pairs"
    n_scenes: int = 48
    image_size: int = 224
    seed: int = 0

    @property
    def n_images(self) -> int:
        """5 per base scene: the base and its 4 variants."""
        return 5 * self.n_scenes


@dataclass(frozen=True, kw_only=True)
class Natural(Section):
    """Natural images a user has on disk, indexed into a manifest by rule ``index_images``
    (:mod:`clipmech.data.natural`, docs/datasets.md); ``n_images`` None is every image."""

    n_images: int | None = None
    seed: int = 0
    skip_unreadable: bool = False


@dataclass(frozen=True, kw_only=True)
class ImageNet(Natural):
    """ILSVRC2012 in any of the layouts :mod:`clipmech.data.natural` detects (``root`` None: not located yet,
    :data:`LOCATIONS`)."""

    kind: str = "imagenet"
    root: str | None
    split: str = "val"


@dataclass(frozen=True, kw_only=True)
class ImageFolder(Natural):
    """A folder of class sub-folders of images (``root`` None: not located yet, :data:`LOCATIONS`)."""

    kind: str = "imagefolder"
    root: str | None
    split: str = "all"


@dataclass(frozen=True, kw_only=True)
class Captions(Natural):
    """Image-text pairs: a CSV/TSV file, webdataset tar shards or a COCO captions JSON (``path`` None: not
    located yet, :data:`LOCATIONS`)."""

    kind: str = "captions"
    path: str | None
    image_key: str = "filepath"
    caption_key: str = "title"
    image_root: str | None = None
    instances: str | None = None
    words: tuple[str, ...] | None = None
    split: str = "all"


@dataclass(frozen=True, kw_only=True)
class Cifar10(Section):
    """CIFAR-10's python version (``root/cifar-10-batches-py/``), read by torchvision, which checks every file's
    md5 (nothing to skip); ``n_images`` None is the whole split. The CIFAR-10 t-SNE map reads the one
    ``tsne.cifar10`` names. ``root`` None: not located yet (:data:`LOCATIONS`)."""

    kind: str = "cifar10"
    root: str | None
    split: str = "test"
    n_images: int | None = None
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class PascalContextImages(Natural):
    """PASCAL Context in mmseg's layout, images with their Context-59 masks; the PASCAL Context-59 segmentation
    reads the one ``decomposition.pascal_context.dataset`` names. ``root`` None: not located yet
    (:data:`LOCATIONS`)."""

    kind: str = "pascal_context"
    root: str | None
    split: str = "val"


DATASET_KINDS = {
    "shapes": Shapes,
    "shift": Shift,
    "pairs": Pairs,
    "imagenet": ImageNet,
    "imagefolder": ImageFolder,
    "captions": Captions,
    "cifar10": Cifar10,
    "pascal_context": PascalContextImages,
}
#: Dataset kinds of natural images on the user's disk (the others are synthesised by the pipeline).
NATURAL_KINDS = ("imagenet", "imagefolder", "captions", "cifar10", "pascal_context")
#: Natural-image kinds with one class per image (zero-shot classification, methods.md Sec. 1.2).
CLASS_KINDS = ("imagenet", "imagefolder", "cifar10")
#: Dataset kinds the decomposition runs on (methods.md Sec. 5.2): Shapes, scored on its attribute tasks, and the
#: natural-image kinds with classes, scored over their classes.
DECOMPOSITION_KINDS = ("shapes", *CLASS_KINDS)
#: The keys that name a dataset of one kind for one rule, with that kind.
NAMED_DATASETS = {"tsne.cifar10": "cifar10", "decomposition.pascal_context.dataset": "pascal_context"}
#: The key that locates a natural-image dataset of each kind on disk, with the layout it expects in one line
#: (docs/datasets.md, "Kinds", has them in full). Declared null, the dataset is not located yet: a run that uses
#: it stops at parse time listing every such key (:func:`_check_locations`); one that does not skips it.
LOCATIONS = {
    "imagenet": (
        "root",
        "ILSVRC2012 as class folders (root/<wnid>/, or root/train/ and root/val/), or the flat val folder "
        "with ILSVRC2012_devkit_t12/ or Kaggle's LOC_val_solution.csv",
    ),
    "imagefolder": ("root", "a folder of class sub-folders of images (the class is the folder name)"),
    "captions": (
        "path",
        "a CSV/TSV of image paths and captions, a folder of webdataset .tar shards, or a COCO captions JSON "
        "(annotations/captions_val2017.json, its images in val2017/ beside annotations/ unless image_root is set)",
    ),
    "cifar10": ("root", "the directory holding cifar-10-batches-py/ (CIFAR-10's python version)"),
    "pascal_context": (
        "root",
        "the VOC2010 directory in mmseg's layout: JPEGImages/, SegmentationClassContext/ and "
        "ImageSets/SegmentationContext/<split>.txt",
    ),
}


@dataclass(frozen=True, kw_only=True)
class Train(Section):
    """Training of a model from random weights by the pipeline (clipmech.models.train.TrainConfig)."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.1
    warmup_steps: int = 100
    image_size: int = 224
    p_drop: float = 0.25
    p_twin: float = 0.5
    min_objects: int = 1
    max_objects: int = 5
    n_heldout: int = 300
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class Model(Section):
    """A configured model: an open_clip architecture and `pretrained` (tag, checkpoint path or None for
    random weights), or `train` (the pipeline trains it and `pretrained` is unset)."""

    architecture: str
    pretrained: str | None = None
    sha256: str | None = None
    image_size: int | None = None
    context_length: int | None = None
    train: Train | None = None

    @classmethod
    def from_mapping(cls, values: Mapping) -> Model:
        train = values.get("train")
        return cls(
            architecture=values["architecture"],
            pretrained=values.get("pretrained"),
            sha256=values.get("sha256"),
            image_size=values.get("image_size"),
            context_length=values.get("context_length"),
            train=None if train is None else Train.from_mapping(train),
        )

    @property
    def sizes(self) -> dict[str, int]:
        """The set overrides of the architecture's input sizes, ``image_size`` and ``context_length``, as the
        keywords of :mod:`clipmech.models.catalogue` and :class:`clipmech.models.loading.ModelSpec` take them."""
        return {
            key: value
            for key, value in (("image_size", self.image_size), ("context_length", self.context_length))
            if value is not None
        }


@dataclass(frozen=True, kw_only=True)
class Analyses(Section):
    """Which models run on which datasets (every pair is analysed)."""

    models: tuple[str, ...]
    datasets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Extraction(Section):
    """Activation extraction into zarr (methods.md Sec. 2)."""

    layers: tuple[int, ...] | None = None
    sites: tuple[str, ...] | Mapping[str, tuple[str, ...]] = (MLP_SITES,)
    reductions: tuple[str, ...] = ("mean", "max", "cls")
    save_tokens: bool = True
    batch_size: int = 32
    device: str = "auto"
    precision: str = "fp32"
    parts: int = 1

    def sites_of(self, model: str) -> tuple[str, ...]:
        """The sites of `model`'s store: the one list of every model, or its entry of a mapping (a model the
        mapping leaves out stores the MLP outputs only)."""
        if isinstance(self.sites, Mapping):
            return tuple(self.sites.get(model, (MLP_SITES,)))
        return self.sites

    def stores(self, site: str, model: str) -> bool:
        """Whether `model`'s activation store holds a site ``<tower>.blocks.<l>.<hook>``: listed, or a ``*``
        pattern covering its layer (vision: a layer of `layers`); hook_mlp_out needs `save_tokens`."""
        tower, layer, hook = block_site(site)
        if tower == "visual" and hook == "hook_mlp_out" and not self.save_tokens:
            return False
        sites = self.sites_of(model)
        covered = tower == "text" or self.layers is None or layer in self.layers
        return site in sites or (f"{tower}.blocks.*.{hook}" in sites and covered)

    def params_of(self, model: str) -> dict:
        """The section as `model`'s extraction jobs get it: :meth:`params` with `sites` its own list, so that
        another model's sites do not rerun its extraction, and without `parts`, which changes how a store is
        written (one job or several), not one byte of it."""
        return {**self.params("parts"), "sites": list(self.sites_of(model))}

    @property
    def part_indices(self) -> list[int]:
        """The `part` wildcard of each extraction part job: 0 .. parts - 1 (one job per store at parts = 1)."""
        return list(range(self.parts))

    @property
    def gpus(self) -> int:
        """The `gpu` resource of the steps that run a model on `device`: none on `cpu`, else 1 (SLURM:
        --gpus=1; gpu=0 adds no GPU option), so a CPU-only cluster runs the whole DAG."""
        return 0 if self.device == "cpu" else 1


@dataclass(frozen=True, kw_only=True)
class Selectivity(Section):
    """Neuron selectivity, Algorithm 1 of the shapes paper (methods.md Sec. 2); `k` is Algorithm 1's k."""

    reduction: str = "mean"
    k: int = 30
    n_null: int = 10000
    n_figure_units: int = 4
    n_heatmap_images: int = 3


@dataclass(frozen=True, kw_only=True)
class Superposition(Section):
    """Superposition of the lowest-entropy units vs separability (methods.md Sec. 3)."""

    n_units: int = 1000
    threshold: float = 0.3
    cross_type: bool = False
    variance_kept: float = 0.9
    pca_fit: str = "all"
    cv: str = "loo"
    test_fraction: float = 0.3
    min_images: int = 5
    confidence_level: float = 0.95
    n_resamples: int = 9999
    bootstrap_method: str = "BCa"


#: Why superposition_separability (methods.md Sec. 3) does not run on a natural-image dataset.
NO_NATURAL_SUPERPOSITION = (
    "superposition_separability pairs two values of one attribute of the objects (two colours, two shapes, two "
    "positions), counted in the object table: a natural dataset's caption words and COCO categories are not values "
    "of one attribute, and its classes, which are, are not implemented (all K(K-1)/2 class pairs, 499,500 for "
    "ImageNet, are beyond the correlations' BCa bootstrap, a jackknife over the pairs)"
)


@dataclass(frozen=True, kw_only=True)
class Binding(Section):
    """Zero-shot binding benchmark (clipmech.analyses.binding)."""

    tasks: tuple[str, ...] = ("colour_swap", "shape_swap", "position_swap", "absent_colour", "absent_shape")
    confidence_level: float = 0.95


@dataclass(frozen=True, kw_only=True)
class Gradcam(Section):
    """Grad-CAM and the energy pointing game (methods.md Sec. 4)."""

    n_images: int = 100
    target: str | None = None
    score: str = "cosine"
    n_figure_rows: int = 6


@dataclass(frozen=True, kw_only=True)
class Tsne(Section):
    """t-SNE maps of the final image embeddings; `cifar10` names the dataset of kind cifar10 mapped (None: no
    CIFAR-10 map)."""

    perplexity: float = 30
    cifar10: str | None = None


@dataclass(frozen=True, kw_only=True)
class Zeroshot(Section):
    """Zero-shot classification of natural-image datasets (methods.md Sec. 1.2); `models` and `datasets`
    resolved (None = analyses.models, every natural-image dataset with classes)."""

    models: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    templates: tuple[str, ...] | None = None
    batch_size: int = 64


@dataclass(frozen=True, kw_only=True)
class Ablation(Section):
    fractions: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True, kw_only=True)
class Text(Section):
    n_words: int = 30000
    batch_size: int = 1000
    n_components: int = 64
    m_values: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    keep_fraction: float = 0.2
    n_class_pairs: int = 5
    n_words_shown: int = 5
    omp_batch_size: int = 128


@dataclass(frozen=True, kw_only=True)
class Segmentation(Section):
    top_k: int = 512
    background_threshold: float = 0.5
    n_figure_images: int = 4


@dataclass(frozen=True, kw_only=True)
class PascalContext(Section):
    """PASCAL Context-59 segmentation (methods.md Sec. 5): the dataset of kind pascal_context it reads
    (`dataset`; None: no segmentation) and the reference protocol."""

    dataset: str | None = None
    scale: tuple[int, ...] = (2048, 384)
    crop_size: int = 384
    stride: int = 192
    logit_scale: float = 40
    top_k: int = 20000


@dataclass(frozen=True, kw_only=True)
class Registers(Section):
    n_images: int | None = None
    chunk_size: int = 16
    n_figure_neurons: int = 20


@dataclass(frozen=True, kw_only=True)
class ShiftMonitoring(Section):
    top_k: int = 50


@dataclass(frozen=True, kw_only=True)
class Decomposition(Section):
    """Neuron x attention-head decomposition of CLIP-ResNet attention pooling (methods.md Sec. 5); `datasets`
    resolved (None = the Shapes datasets of analyses.datasets)."""

    models: tuple[str, ...] = ()
    datasets: tuple[str, ...] | None = None
    chunk_size: int = 100
    pc_top_k: int = 50
    n_checked: int = 200
    max_rel_err: float = 0.0001
    ablation: Ablation = field(default_factory=Ablation)
    text: Text = field(default_factory=Text)
    segmentation: Segmentation = field(default_factory=Segmentation)
    pascal_context: PascalContext = field(default_factory=PascalContext)
    registers: Registers = field(default_factory=Registers)
    shift: ShiftMonitoring = field(default_factory=ShiftMonitoring)


@dataclass(frozen=True, kw_only=True)
class Families(Section):
    transformer: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "head", "neuron")
    resnet: tuple[str, ...] = ("stage", "pool_token", "pool_head", "pool_neuron")


@dataclass(frozen=True, kw_only=True)
class Circuit(Section):
    threshold: float = 0.8
    n_points: int = 32
    n_random: int = 5
    mlp: str = "layer"


@dataclass(frozen=True, kw_only=True)
class Foil(Section):
    """The foil captions of causal tracing on a captions dataset (methods.md Sec. 8.1, :mod:`clipmech.data.foils`):
    the kind of word swapped and the attribute words. The default attributes are Berlin and Kay's eleven basic
    colour terms without ``orange``, also a COCO object category (a swap could hit the fruit), spelt ``gray`` as
    COCO's (US English) captions spell it: colour is the attribute the Shapes binding pairs swap."""

    kind: str = "object"
    attributes: tuple[str, ...] = (
        "black",
        "white",
        "red",
        "green",
        "yellow",
        "blue",
        "brown",
        "pink",
        "purple",
        "gray",
    )


@dataclass(frozen=True, kw_only=True)
class Concepts(Section):
    """Concept selectivity and interventions (methods.md Secs. 8.5-8.6); `datasets` resolved (None =
    patching.datasets)."""

    datasets: tuple[str, ...] | None = None
    batch_size: int = 50
    threshold: float = 0.9
    n_units: int = 50
    scales: tuple[float, ...] = (0.0, 2.0)
    n_bootstrap: int = 1000


@dataclass(frozen=True, kw_only=True)
class Patching(Section):
    """Causal tracing and activation patching (methods.md Sec. 8); `models` and `datasets` resolved."""

    models: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    corruptions: tuple[str, ...] = ("zero", "noise", "colour", "shape", "position", "binding")
    directions: tuple[str, ...] = ("denoising", "noising")
    families: Families = field(default_factory=Families)
    n_pairs: int = 100
    layers: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    noise_scale: float = 3.0
    min_effect: float = 0.5
    n_bootstrap: int = 1000
    batch_size: int = 256
    circuit: Circuit = field(default_factory=Circuit)
    foil: Foil = field(default_factory=Foil)
    concepts: Concepts = field(default_factory=Concepts)


#: Dataset kinds causal tracing runs on (methods.md Sec. 8.1): Shapes minimal pairs, image-caption pairs with foils.
TRACING_KINDS = ("pairs", "captions")
#: The corruptions of `patching.corruptions` that run on a captions dataset: the embedding corruptions (the others
#: are Shapes minimal pairs, clipmech.patching.runs.MINIMAL_PAIRS).
CAPTION_CORRUPTIONS = ("zero", "noise")

#: Dataset kinds with concepts for the concept AUROC (methods.md Sec. 8.5): the Shapes features of an object
#: table, a natural-image dataset's classes, COCO categories or words (a captions dataset needs one of the two).
CONCEPT_KINDS = ("shapes", "pairs", "imagenet", "imagefolder", "cifar10", "captions")
#: Of those, the kinds the concept interventions run on (methods.md Sec. 8.6: the 16 Shapes features).
INTERVENTION_KINDS = ("shapes", "pairs")


def _no_concepts(name: str, entry) -> str | None:
    """Why dataset `name` (a config mapping or a dataset section) has no concepts for the concept AUROC, or None."""
    values = entry if isinstance(entry, Mapping) else dataclasses.asdict(entry)
    kind = values["kind"]
    if kind not in CONCEPT_KINDS:
        return (
            f"dataset {name!r} is of kind {kind}, which has no concepts for the concept AUROC (methods.md Sec. 8.5); "
            f"the kinds with concepts are: {', '.join(CONCEPT_KINDS)}"
        )
    if kind == "captions" and values.get("words") is None and values.get("instances") is None:
        return (
            f"dataset {name!r} is a captions dataset without concepts for the concept AUROC: set datasets.{name}.words "
            f"(words or phrases found in the captions) or datasets.{name}.instances (COCO's instances file)"
        )
    return None


@dataclass(frozen=True, kw_only=True)
class SaeEvaluation(Section):
    """Evaluation of each SAE (clipmech.sae.evaluate); `entropy_k` resolved (None = selectivity.k)."""

    batch_size: int = 32
    split: str = "holdout"
    dense_threshold: float = 0.1
    purity_k: int = 16
    coverage_ap: float = 0.3
    entropy_k: int | None = None
    fit_tokens: int = 20000
    kmeans_max_clusters: int = 1024
    n_figure_latents: int = 6
    n_figure_images: int = 8


@dataclass(frozen=True, kw_only=True)
class Sae(Section):
    """Top-k sparse autoencoders (methods.md Sec. 7); `models` resolved, `sites` as written (a list for
    every model or a mapping per model: :attr:`Plan.sae_sites` has each model's list)."""

    models: tuple[str, ...] | None = None
    sites: tuple[str, ...] | Mapping[str, tuple[str, ...]] = ()
    tokens: str = "all"
    expansion: float = 8
    n_latents: int | None = None
    k: int = 8
    k_aux: int | None = None
    dead_tokens: int = 100000
    lr: float = 0.0002
    n_tokens: int = 2000000
    batch_size: int = 1024
    buffer_tokens: int = 65536
    holdout: float = 0.1
    checkpoint_every: int = 500
    max_fvu: float = 1.0
    seed: int = 0
    evaluate: SaeEvaluation = field(default_factory=SaeEvaluation)


@dataclass(frozen=True, kw_only=True)
class Interventions(Section):
    scale: tuple[float, ...] = (2.0, 0.0)
    add: tuple[float, ...] = (1.0, -1.0)


@dataclass(frozen=True, kw_only=True)
class ClipDissect(Section):
    top_k: int = 100
    a: float = 10
    lam: float = 1


@dataclass(frozen=True, kw_only=True)
class Netdissect(Section):
    quantile: float = 0.005
    resolution: int = 112


@dataclass(frozen=True, kw_only=True)
class UnitSet(Section):
    """A MiCLIP unit set: a site's channels (`neurons`) or the latents of the SAE there (`sae`)."""

    site: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class Miclip(Section):
    """MiCLIP (methods.md Sec. 9); `dataset` and `k_top` resolved (None = analyses.datasets[0], selectivity.k)."""

    units: Mapping[str, tuple[UnitSet, ...]] = field(default_factory=lambda: MappingProxyType({}))
    dataset: str | None = None
    reference: str = "shapes-vit"
    holdout: float = 0.5
    losses: tuple[str, ...] = ("both", "input", "output")
    seeds: tuple[int, ...] = (0, 1, 2)
    temperature: float = 0.07
    steps: int = 1000
    batch_size: int = 128
    lr: float = 0.001
    tau: int = 5
    n_words: int = 30000
    k_top: int | None = None
    batch_size_eval: int = 1024
    interventions: Interventions = field(default_factory=Interventions)
    clip_dissect: ClipDissect = field(default_factory=ClipDissect)
    netdissect: Netdissect = field(default_factory=Netdissect)

    @classmethod
    def from_mapping(cls, values: Mapping) -> Miclip:
        units = {model: tuple(UnitSet.from_mapping(unit) for unit in sets) for model, sets in values["units"].items()}
        section = super().from_mapping({key: value for key, value in values.items() if key != "units"})
        return dataclasses.replace(section, units=MappingProxyType(units))


@dataclass(frozen=True, kw_only=True)
class Atlas(Section):
    """The neuron atlas (methods.md Sec. 10); `models`, `dataset` and `k` resolved (None = the analysed
    then decomposed models, analyses.datasets[0], selectivity.k)."""

    models: tuple[str, ...] | None = None
    dataset: str | None = None
    k: int | None = None
    max_units: int | None = 256
    n_top_images: int = 12
    thumbnail_size: int = 64
    bins: int = 40
    n_reads: int = 8
    batch_tokens: int = 65536


@dataclass(frozen=True, kw_only=True)
class Storage(Section):
    """The disk the stores may take (clipmech.storage); `budget_gb` None is no limit."""

    budget_gb: float | None = None


#: The sections with a schema of their own, by top-level key.
SECTIONS = {
    "analyses": Analyses,
    "extraction": Extraction,
    "selectivity": Selectivity,
    "superposition": Superposition,
    "binding": Binding,
    "gradcam": Gradcam,
    "tsne": Tsne,
    "zeroshot": Zeroshot,
    "decomposition": Decomposition,
    "patching": Patching,
    "sae": Sae,
    "miclip": Miclip,
    "atlas": Atlas,
    "storage": Storage,
}


# --- The run plan and the config ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What runs where. Pairs are (model, dataset) in the config's order (models outer).

    Attributes
    ----------
    used : tuple of str
        Models some analysis runs (analyses, decomposition, patching, an SAE, MiCLIP), sorted; a
        configured model no analysis uses is neither trained nor loaded.
    trained : tuple of str
        The used models with a `train` block, trained by the pipeline.
    analyses, shapes_analyses, decompositions, shapes_decompositions, patchings : tuple of (model, dataset)
        The activation store and Algorithm 1 (methods.md Sec. 2) of every analysed model on every
        analysed dataset; the rest of the shapes-paper track (superposition, binding, Grad-CAM, t-SNE,
        figures) on the synthetic ones only (it reads objects, masks and attribute captions); the
        decomposition (methods.md Sec. 5) of every decomposed model on every dataset of
        `decomposition.datasets` (default: the synthetic analysed ones); its Shapes-only stages
        (segmentation, shift monitoring) on the synthetic ones of those; causal tracing (methods.md
        Secs. 8.1-8.4) of every patching model on every patching dataset.
    concepts, concept_interventions : tuple of (model, dataset)
        The concept AUROC (methods.md Sec. 8.5) of every patching model on every dataset of
        `patching.concepts.datasets`; the concept interventions (Sec. 8.6) of those on Shapes datasets
        (:data:`INTERVENTION_KINDS`).
    sae_sites : mapping of str to tuple of str
        The SAE sites of each model of `sae.models` (methods.md Sec. 7).
    saes : tuple of (model, site)
        Every SAE; each trains on the store of its model on `sae_dataset`.
    sae_dataset : str
        analyses.datasets[0]: a Shapes or a natural-image dataset (then the alignment reads its image-level
        concepts and the downstream metrics its zero-shot classifier, methods.md Sec. 7.4).
    miclip_units : tuple of (model, site, kind)
        Every MiCLIP unit set (methods.md Sec. 9), probed on `miclip.dataset`.
    miclip_sites : tuple of (model, site)
        Sorted sites of the unit sets (one probe and one set of encoders each).
    atlas_models : tuple of str
        Models with an atlas (methods.md Sec. 10), built on `atlas_dataset`.
    atlas_dataset : str
    shift_of : mapping of str to str
        The dataset of kind `shift` of each base Shapes dataset that has one.
    zeroshots : tuple of (model, dataset)
        Zero-shot classification (methods.md Sec. 1.2) of every `zeroshot.models` model on every
        `zeroshot.datasets` dataset.
    """

    used: tuple[str, ...]
    trained: tuple[str, ...]
    analyses: tuple[tuple[str, str], ...]
    shapes_analyses: tuple[tuple[str, str], ...]
    decompositions: tuple[tuple[str, str], ...]
    shapes_decompositions: tuple[tuple[str, str], ...]
    patchings: tuple[tuple[str, str], ...]
    concepts: tuple[tuple[str, str], ...]
    concept_interventions: tuple[tuple[str, str], ...]
    sae_sites: Mapping[str, tuple[str, ...]]
    saes: tuple[tuple[str, str], ...]
    sae_dataset: str
    miclip_units: tuple[tuple[str, str, str], ...]
    miclip_sites: tuple[tuple[str, str], ...]
    atlas_models: tuple[str, ...]
    atlas_dataset: str
    shift_of: Mapping[str, str]
    zeroshots: tuple[tuple[str, str], ...]

    @property
    def all_sae_sites(self) -> list[str]:
        """Every site some SAE is trained at, sorted."""
        return sorted({site for sites in self.sae_sites.values() for site in sites})


@dataclass(frozen=True)
class Config:
    """The validated, normalised and checked config (:func:`load_config`) and its :class:`Plan`."""

    seed: int
    datasets: Mapping[str, Shapes | Shift | Pairs | ImageNet | ImageFolder | Captions | Cifar10 | PascalContextImages]
    models: Mapping[str, Model]
    analyses: Analyses
    extraction: Extraction
    selectivity: Selectivity
    superposition: Superposition
    binding: Binding
    gradcam: Gradcam
    tsne: Tsne
    zeroshot: Zeroshot
    decomposition: Decomposition
    patching: Patching
    sae: Sae
    miclip: Miclip
    atlas: Atlas
    storage: Storage
    plan: Plan

    def datasets_of_kind(self, kind: str) -> list[str]:
        """The names of the datasets of a kind (`shapes`, `shift`, `pairs`), sorted."""
        return _datasets_of_kind(self.datasets, kind)

    def model_entry(self, name: str) -> dict:
        """A model's entry as the jobs load it (clipmech.models.loading): architecture, pretrained, and
        image_size, context_length and sha256 where set; a pipeline-trained model's `pretrained` is its checkpoint.

        Raises
        ------
        KeyError
            If no model has this name.
        """
        model = self.models[name]
        pretrained = CHECKPOINT.format(model=name) if model.train is not None else model.pretrained
        entry = {"architecture": model.architecture, "pretrained": pretrained, **model.sizes}
        if model.sha256 is not None:
            entry["sha256"] = model.sha256
        return entry

    def skipped(self) -> list[str]:
        """What this config leaves out of the run and how to run it, one line each (the Snakefile logs them).

        Natural-image datasets get only their store and Algorithm 1 (and zero-shot classification), a
        synthetic dataset without a shift split no monitoring, no patching models or pairs datasets no
        causal tracing, a natural-image dataset of `patching.concepts.datasets` no concept interventions
        (:meth:`concept_skips`), an unset `tsne.cifar10` no CIFAR-10 maps, an unset
        `decomposition.pascal_context.dataset` no PASCAL Context segmentation; a natural-image dataset in no
        analysis is only indexed, and one not located yet (:meth:`unlocated`) not even that.
        """
        plan = self.plan
        synthetic = {dataset for _, dataset in plan.shapes_analyses}
        decomposed = {dataset for _, dataset in plan.decompositions}
        lines = [
            f"{dataset} is a natural-image dataset: its activation store and Algorithm 1 run (and the SAEs, "
            "when it is analyses.datasets[0], and MiCLIP, when it is miclip.dataset), the rest of the "
            "shapes-paper track (it reads objects, masks and attribute captions) does not, and the decomposition "
            + ("does" if dataset in decomposed else "runs only where decomposition.datasets names it")
            + "; "
            + NO_NATURAL_SUPERPOSITION
            for dataset in sorted({d for _, d in plan.analyses} - synthetic)
        ]
        lines += [
            f"{dataset} ({self.datasets[dataset].kind}) is decomposed by {model}: its ablation curves and "
            "sparse-direction accuracy score zero-shot top-1 over its classes; segmentation and shift monitoring "
            "do not run on it (they read Shapes masks and objects)"
            for model, dataset in plan.decompositions
            if (model, dataset) not in plan.shapes_decompositions
        ]
        lines += [
            f"no dataset of kind shift has base {dataset}: skipping the shift monitoring of {model} on it "
            "(declare one under datasets to run it)"
            for model, dataset in plan.shapes_decompositions
            if dataset not in plan.shift_of
        ]
        lines += [
            f"dataset {dataset} ({self.datasets[dataset].kind}) is in no analysis: indexing it only"
            for dataset in self.indexed_only()
        ]
        lines += [
            f"datasets.{dataset}.{LOCATIONS[self.datasets[dataset].kind][0]} is null and no analysis uses "
            f"{dataset}: skipping it (set it to your copy, docs/datasets.md, to index it)"
            for dataset in self.unlocated()
        ]
        if not plan.patchings:
            lines.append(
                "causal tracing and activation patching do not run: patching.models or patching.datasets is "
                "empty (it reads minimal pairs or image-caption pairs: declare a dataset of kind pairs, or name a "
                "captions dataset in patching.datasets)"
            )
        lines += self.concept_skips()
        if self.tsne.cifar10 is None:
            lines.append(
                "tsne.cifar10 is not set: skipping the CIFAR-10 t-SNE maps (declare a local copy under datasets "
                "with kind cifar10 and name it in tsne.cifar10 to draw them)"
            )
        if self.decomposition.pascal_context.dataset is None and self.decomposition.models:
            lines.append(
                "decomposition.pascal_context.dataset is not set: skipping PASCAL Context-59 segmentation "
                "(declare a local VOC2010 copy in mmseg's layout under datasets with kind pascal_context and name "
                "it in decomposition.pascal_context.dataset to run it)"
            )
        return lines

    def named_dataset(self, key: str):
        """An input function of the rule that reads the dataset a key of :data:`NAMED_DATASETS` names: the
        dataset's folder; when the key is null (the rule is then not planned, but its output may be asked for
        by name) it raises ValueError naming the key, so the DAG is not built.

        Raises
        ------
        KeyError
            If `key` is not one of :data:`NAMED_DATASETS` (at parse time).
        """
        kind = NAMED_DATASETS[key]
        name = {
            "tsne.cifar10": self.tsne.cifar10,
            "decomposition.pascal_context.dataset": self.decomposition.pascal_context.dataset,
        }[key]

        def dataset_dir(wildcards) -> str:
            if name is None:
                raise ValueError(f"{key} is null: name a dataset of kind {kind} (declared under datasets) to run this")
            return DATA.format(dataset=name)

        return dataset_dir

    def synthetic_data(self, name: str) -> str:
        """The folder of a synthetic dataset, for rules that read its objects, masks or attribute captions.

        Raises
        ------
        ValueError
            If `name` is a natural-image dataset, with the reason (the DAG is then not built).
        """
        kind = self.datasets[name].kind
        if kind in NATURAL_KINDS:
            raise ValueError(
                f"this rule reads a synthetic dataset's objects, masks and attribute captions, but {name} is "
                f"a natural-image dataset (kind {kind}), which has none (docs/datasets.md lists what runs on natural "
                f"images; {NO_NATURAL_SUPERPOSITION})"
            )
        return DATA.format(dataset=name)

    def decomposition_inputs(self, model: str, dataset: str, text: bool) -> dict[str, str | list[str]]:
        """The inputs of rules ablate_components (``text`` False) and decompose_text (``text`` True) beside the
        store (methods.md Sec. 5.2): the dataset's folder; the text embeddings of rule embed_text (the
        attribute prompts of a Shapes dataset, the words of decompose_text's dictionary) with their sha256
        record, when ``text`` or the dataset is synthetic; for a natural-image dataset with classes, the model's
        zero-shot classifier over them (rule zero_shot_classifier) with its sha256 record and the checkpoint
        file its provenance hashes (none for an open_clip tag).

        Raises
        ------
        ValueError
            If the dataset is natural but has no classes, with the reason (the DAG is then not built).
        """
        kind = self.datasets[dataset].kind
        if kind in NATURAL_KINDS and kind not in CLASS_KINDS:
            raise ValueError(
                f"the decomposition scores zero-shot accuracy over one class per image, but {dataset} is a {kind} "
                f"dataset, which has none; kinds it runs on: {', '.join(DECOMPOSITION_KINDS)}"
            )
        inputs: dict[str, str | list[str]] = {"dataset_dir": DATA.format(dataset=dataset)}
        if text or kind not in NATURAL_KINDS:
            inputs |= {"text_path": TEXT.format(model=model), "text_path_sha256": f"{TEXT.format(model=model)}.sha256"}
        if kind in CLASS_KINDS:
            classifier = CLASSIFIER.format(model=model, dataset=dataset)
            pretrained = self.model_entry(model)["pretrained"]
            inputs |= {
                "classifier": classifier,
                "classifier_sha256": f"{classifier}.sha256",
                "checkpoint": [pretrained] if is_local_checkpoint(pretrained) else [],
            }
        return inputs

    def decomposition_classifier_spec(self, model_spec: dict, dataset: str) -> dict | None:
        """What rules ablate_components and decompose_text check a dataset's zero-shot classifier against
        (clipmech.stages.zero_shot_classifier.load_weights): ``model`` (``model_spec``, the model's entry as rules
        pass it) and ``templates`` (zeroshot.templates, null for ImageNet's default); None for a Shapes dataset,
        so that editing them reruns no Shapes job."""
        if self.datasets[dataset].kind not in CLASS_KINDS:
            return None
        templates = self.zeroshot.templates
        return {"model": model_spec, "templates": None if templates is None else list(templates)}

    def sae_evaluation_inputs(self, model: str) -> dict[str, str]:
        """The inputs of rule evaluate_sae beside the store and the SAE, for `model`: the folder of the dataset
        the SAEs train on (`Plan.sae_dataset`: its concepts ground the alignment) and, when that is a
        natural-image dataset with classes (CLASS_KINDS), the model's zero-shot classifier over them
        (rule zero_shot_classifier; the downstream metrics classify over it, methods.md Sec. 7.4) with its
        sha256 record. Datasets without one class per image (Shapes, captions, pascal_context) need none."""
        dataset = self.plan.sae_dataset
        inputs = {"dataset_dir": DATA.format(dataset=dataset)}
        if self.datasets[dataset].kind in CLASS_KINDS:
            classifier = CLASSIFIER.format(model=model, dataset=dataset)
            inputs |= {"classifier": classifier, "classifier_sha256": f"{classifier}.sha256"}
        return inputs

    def sae_natural_params(self) -> dict:
        """What evaluate_sae needs of a natural-image SAE dataset: ``templates`` (zeroshot.templates, checked
        against its classifier's provenance; a dataset with classes only) and ``words`` (a captions dataset's
        concept words); None where they do not apply, so that editing them reruns no Shapes evaluation."""
        entry = self.datasets[self.plan.sae_dataset]
        templates = self.zeroshot.templates if entry.kind in CLASS_KINDS else None
        words = getattr(entry, "words", None) if entry.kind == "captions" else None
        return {
            "templates": None if templates is None else list(templates),
            "words": None if words is None else list(words),
        }

    def miclip_natural_params(self) -> dict | None:
        """What the MiCLIP stages need of a natural-image miclip.dataset (methods.md Sec. 9.8): ``words`` (a
        captions dataset's concept words, else None) and ``templates`` (zeroshot.templates, checked against the
        classifier's provenance; a dataset with classes only, else None); None for a Shapes dataset, so that
        editing them reruns no Shapes job."""
        entry = self.datasets[self.miclip.dataset]
        if entry.kind not in NATURAL_KINDS:
            return None
        words = getattr(entry, "words", None) if entry.kind == "captions" else None
        templates = self.zeroshot.templates if entry.kind in CLASS_KINDS else None
        return {
            "words": None if words is None else list(words),
            "templates": None if templates is None else list(templates),
        }

    def miclip_classifier(self, sha256: bool = False) -> str | list:
        """The target's zero-shot classifier over a natural-image miclip.dataset with classes (rule
        zero_shot_classifier; Delta Acc classifies over it, methods.md Sec. 9.8), as a pattern in the
        ``{model}`` wildcard, or its sha256 record; [] for other datasets (no input)."""
        dataset = self.miclip.dataset
        if self.datasets[dataset].kind not in CLASS_KINDS:
            return []
        path = CLASSIFIER.format(model="{model}", dataset=dataset)
        return f"{path}.sha256" if sha256 else path

    def concept_data(self, name: str) -> str:
        """The folder of a dataset for rule concept_auroc (methods.md Sec. 8.5), of any kind with concepts, named
        in `patching.concepts.datasets` or not.

        Raises
        ------
        ValueError
            If the dataset has no concepts (a kind outside :data:`CONCEPT_KINDS`, a captions dataset without
            `words` or `instances`), with the reason (the DAG is then not built).
        """
        reason = _no_concepts(name, self.datasets[name])
        if reason is not None:
            raise ValueError(f"rule concept_auroc: {reason}")
        return DATA.format(dataset=name)

    def patching_foil(self, name: str) -> dict | None:
        """What rule patch_components needs of the foils of dataset `name` (methods.md Sec. 8.1): `patching.foil`
        (``kind``, ``attributes``) for a captions dataset, None for a pairs dataset (its foils are its own), so
        that editing the foil reruns no Shapes tracing."""
        if self.datasets[name].kind != "captions":
            return None
        return self.patching.foil.params()

    def tracing_corruptions(self, name: str) -> tuple[str, ...]:
        """The corruptions causal tracing runs on dataset `name` (methods.md Sec. 8.1): `patching.corruptions`
        on a pairs dataset, the embedding corruptions among them (:data:`CAPTION_CORRUPTIONS`) on a captions
        dataset, whose image-caption pairs have no minimal pairs."""
        if self.datasets[name].kind != "captions":
            return self.patching.corruptions
        return tuple(c for c in self.patching.corruptions if c in CAPTION_CORRUPTIONS)

    def tracing_params(self, name: str) -> dict:
        """`patching` as rule patch_components runs it on dataset `name`: without what only the DAG, the concept
        rules or the foils read, with the run's seed and :meth:`tracing_corruptions`."""
        return {
            **self.patching.params("models", "datasets", "concepts", "foil"),
            "corruptions": list(self.tracing_corruptions(name)),
            "seed": self.seed,
        }

    def tracing_pairs(self, name: str) -> int:
        """The pairs per corruption causal tracing runs on dataset `name`: `patching.n_pairs`, at most the
        scenes of a pairs dataset or the `n_images` of a captions dataset (an upper bound there: images whose
        first caption has no word to swap are left out)."""
        entry = self.datasets[name]
        bound = entry.n_scenes if entry.kind == "pairs" else entry.n_images
        return self.patching.n_pairs if bound is None else min(self.patching.n_pairs, bound)

    def patching_targets(self) -> list[str]:
        """The figures rule all asks of causal tracing and concept selectivity (methods.md Sec. 8): circuit.png of
        every (model, pairs dataset) traced, auroc.png of every (model, dataset) of the concept AUROC, and
        interventions.png of those on Shapes datasets."""
        plan = self.plan
        targets = [f"results/patching/{model}/{dataset}/circuit.png" for model, dataset in plan.patchings]
        for model, dataset in plan.concepts:
            targets.append(f"results/patching/{model}/{dataset}/auroc.png")
            if (model, dataset) in plan.concept_interventions:
                targets.append(f"results/patching/{model}/{dataset}/interventions.png")
        return targets

    def atlas_patching_inputs(self, model: str) -> dict[str, str]:
        """The patching tables a model's atlas reads (methods.md Sec. 10): the concept AUROC and the recovery of
        the model on the first of `patching.datasets` (minimal pairs), when it is traced; {} otherwise."""
        if model not in self.patching.models or not self.patching.datasets:
            return {}
        base = f"results/patching/{model}/{self.patching.datasets[0]}"
        return {"auroc": f"{base}/auroc.tsv", "recovery": f"{base}/recovery.tsv"}

    def concept_skips(self) -> list[str]:
        """What :meth:`skipped` says of the concept AUROC and interventions (methods.md Secs. 8.5-8.6)."""
        plan = self.plan
        if not plan.concepts:
            return [
                "concept selectivity (concept_auroc) does not run: patching.models or patching.concepts.datasets is "
                f"empty (name datasets of kinds {', '.join(CONCEPT_KINDS)} in patching.concepts.datasets to run it)"
            ]
        intervened = {dataset for _, dataset in plan.concept_interventions}
        return [
            f"{dataset} ({self.datasets[dataset].kind}) is in patching.concepts.datasets: its concept AUROC runs, the "
            "concept interventions (intervene_concepts) do not: they run on Shapes datasets only, scaling the top units "
            "on images held in memory and measuring the change in cosine to the 16 features' attribute prompts "
            "(methods.md Sec. 8.6)"
            for dataset in dict.fromkeys(dataset for _, dataset in plan.concepts)
            if dataset not in intervened
        ]

    def natural_datasets(self) -> list[str]:
        """The natural-image datasets (:data:`NATURAL_KINDS`), by kind then name."""
        return [name for kind in NATURAL_KINDS for name in self.datasets_of_kind(kind)]

    def unlocated(self) -> list[str]:
        """The natural-image datasets declared with their location key (:data:`LOCATIONS`) null, by kind then
        name; :func:`load_config` has refused a config in which the run uses one."""
        return [
            name
            for name in self.natural_datasets()
            if getattr(self.datasets[name], LOCATIONS[self.datasets[name].kind][0]) is None
        ]

    def dataset_spec(self, name: str) -> dict:
        """A dataset's entry as rules synthesize_* and index_images read it (:meth:`Section.params`, without
        a captions dataset's `words`, which are the analyses').

        Raises
        ------
        ValueError
            If `name` is a natural-image dataset not located yet (its folder asked for by name), naming the
            key to set and the layout it expects; the DAG is then not built.
        KeyError
            If no dataset has this name.
        """
        entry = self.datasets[name]
        if name in self.unlocated():
            key, layout = LOCATIONS[entry.kind]
            raise ValueError(f"datasets.{name}.{key} is null: set it to {layout} (docs/datasets.md) to index {name}")
        return entry.params("words")

    def indexed_only(self) -> list[str]:
        """The located natural-image datasets no analysis, no zero-shot classification, no concept AUROC, no
        MiCLIP run, no CIFAR-10 map, no decomposition and no PASCAL Context segmentation reads."""
        used = set(self.zeroshot.datasets) | set(self.analyses.datasets)
        used |= {self.miclip.dataset} if self.plan.miclip_units else set()
        used |= {dataset for _, dataset in self.plan.concepts}
        used |= {self.tsne.cifar10} if self.analyses.models else set()
        used |= {self.decomposition.pascal_context.dataset} if self.decomposition.models else set()
        used |= {dataset for _, dataset in self.plan.decompositions}
        return [name for name in self.natural_datasets() if name not in used and name not in self.unlocated()]


# --- Loading --------------------------------------------------------------------------------------------


@functools.cache
def _schema(path: Path) -> dict:
    """The schema file, parsed once per process (never modified: defaults are filled with copies)."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _validator(schema: Mapping) -> jsonschema.protocols.Validator:
    """A draft 2020-12 validator that fills in each missing property's `default` (as Snakemake's validate)."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def _canonical(value):
    """The config value with every mapping's keys sorted, recursively."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def load_config(config: Mapping, schema: str | Path = SCHEMA) -> Config:
    """Validate, normalise and check a config mapping (the module docstring lists the steps).

    Parameters
    ----------
    config : mapping
        The config as YAML gives it (not modified).
    schema : path
        The JSON schema in YAML (default: the workflow's).

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        If the config does not match the schema (the message has the key and the schema's reason), holds a
        key that moved (:func:`_refuse_moved_keys`: the message says where to), uses natural-image datasets
        that are not located yet (:func:`_check_locations`: the message lists every key to set) or fails a
        cross-key check (the message names the key and the allowed values).
    """
    raw = copy.deepcopy(dict(config))
    _refuse_moved_keys(raw)
    try:
        _validator(_schema(Path(schema).resolve())).validate(raw)
    except jsonschema.ValidationError as error:
        where = ".".join(map(str, error.absolute_path)) or "the top level"
        allowed = error.schema.get("description") if error.validator == "pattern" else None
        reason = f"{error.message}; allowed: {allowed}" if allowed else error.message
        raise ValueError(f"invalid config at {where}: {reason}") from None
    raw = _canonical(raw)
    _check_locations(raw)
    sae_sites, shift_of = _normalise(raw)
    return Config(
        seed=raw["seed"],
        datasets=MappingProxyType(
            {name: DATASET_KINDS[entry["kind"]].from_mapping(entry) for name, entry in raw["datasets"].items()}
        ),
        models=MappingProxyType({name: Model.from_mapping(entry) for name, entry in raw["models"].items()}),
        **{key: section.from_mapping(raw[key]) for key, section in SECTIONS.items()},
        plan=_plan(raw, sae_sites, shift_of),
    )


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping with a key twice (:class:`StrictLoader`)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a duplicated key (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: a written key may override a merged one
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the base class raises its own error
                    continue
                if first is not key_node.start_mark:
                    raise DuplicateKeyError(
                        f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                        f"{first.line + 1}) of the mapping at line {node.start_mark.line + 1}: YAML would keep "
                        "the last value silently; write each key once"
                    )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path):
    """A YAML (or JSON) config file's content, refusing duplicated keys.

    Raises
    ------
    ValueError
        If a mapping of the file has a key twice (naming the key and both lines), or the file is not
        valid YAML.
    """
    with open(path, encoding="utf-8") as stream:
        try:
            return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
        except yaml.YAMLError as error:
            raise ValueError(f"config file {path}: {error}") from None


def read_config(path: str | Path, schema: str | Path = SCHEMA) -> Config:
    """:func:`load_config` of a YAML file (duplicated keys refused: :func:`read_yaml`)."""
    return load_config(read_yaml(path), schema)


# --- Resolution and checks (parse time) -----------------------------------------------------------------


def _refuse_moved_keys(raw: Mapping) -> None:
    """Raise ValueError, saying where they went, for keys that moved: the `cifar10` section and
    `decomposition.pascal_context`'s `root`, `split`, `n_images` (a local CIFAR-10 or PASCAL Context copy is a
    dataset of its own kind now, named by `tsne.cifar10` or `decomposition.pascal_context.dataset`)."""
    if "cifar10" in raw:
        raise ValueError(
            "the cifar10 section moved: declare the local copy as a dataset, e.g. datasets: {cifar10-test: "
            "{kind: cifar10, root: <directory holding cifar-10-batches-py/>, split: test, n_images: 2000}}, and "
            "name it in tsne.cifar10 (delete the cifar10 section; null skips the map)"
        )
    decomposition = raw.get("decomposition")
    pascal = decomposition.get("pascal_context") if isinstance(decomposition, Mapping) else None
    moved = [key for key in ("root", "split", "n_images") if isinstance(pascal, Mapping) and key in pascal]
    if moved:
        raise ValueError(
            f"the key(s) {', '.join(moved)} of decomposition.pascal_context moved: declare the local copy as a dataset, e.g. "
            "datasets: {pascal-context-val: {kind: pascal_context, root: <VOC2010 directory in mmseg's layout>, "
            "split: val}} (n_images there draws a seeded subset), and name it in "
            "decomposition.pascal_context.dataset"
        )


def _located(entry: Mapping) -> bool:
    """Whether a dataset entry is somewhere: a synthetic one always, a natural-image one once its
    :data:`LOCATIONS` key is set."""
    location = LOCATIONS.get(entry["kind"])
    return location is None or entry.get(location[0]) is not None


def _dataset_uses(raw: Mapping) -> dict[str, list[str]]:
    """The keys naming each dataset for something the run plans, by dataset, on the validated mapping before
    the defaults that copy another key are resolved (those never bring in a natural-image dataset that no key
    names: patching.concepts.datasets copies patching.datasets, miclip.dataset and atlas.dataset
    analyses.datasets[0], the zeroshot.datasets default leaves out datasets not located). A key whose analysis
    has no model uses nothing."""
    patching_models = raw["patching"]["models"]
    zeroshot_models = raw["zeroshot"]["models"]
    patched = bool(raw["analyses"]["models"] if patching_models is None else patching_models)
    classified = bool(raw["analyses"]["models"] if zeroshot_models is None else zeroshot_models)
    decomposed = bool(raw["decomposition"]["models"])
    named = [
        ("analyses.datasets", raw["analyses"]["datasets"], True),
        ("zeroshot.datasets", raw["zeroshot"]["datasets"], classified),
        ("decomposition.datasets", raw["decomposition"]["datasets"], decomposed),
        ("decomposition.pascal_context.dataset", [raw["decomposition"]["pascal_context"]["dataset"]], decomposed),
        ("tsne.cifar10", [raw["tsne"]["cifar10"]], bool(raw["analyses"]["models"])),
        ("patching.datasets", raw["patching"]["datasets"], patched),
        ("patching.concepts.datasets", raw["patching"]["concepts"]["datasets"], patched),
        ("miclip.dataset", [raw["miclip"]["dataset"]], bool(raw["miclip"]["units"])),
        ("atlas.dataset", [raw["atlas"]["dataset"]], raw["atlas"]["models"] != []),
    ]
    uses: dict[str, list[str]] = {}
    for key, names, planned in named:
        for name in (names or []) if planned else []:
            if name is not None:
                uses.setdefault(name, []).append(key)
    return uses


def _check_locations(raw: dict) -> None:
    """Raise one ValueError listing every location key (:data:`LOCATIONS`) left null on a dataset the run uses
    (:func:`_dataset_uses`), each with the dataset's kind, the keys that use it and the layout it expects, so
    that all of them are set at once; for a captions dataset whose uses need concepts and that has neither
    ``instances`` nor ``words``, its ``instances`` too. Datasets nothing uses may stay null (skipped:
    :meth:`Config.skipped`)."""
    uses = _dataset_uses(raw)
    concept_keys = {"analyses.datasets", "patching.concepts.datasets", "miclip.dataset"}
    if raw["patching"]["foil"]["kind"] == "object":
        concept_keys.add("patching.datasets")
    lines = []
    for name, entry in raw["datasets"].items():
        if name not in uses or _located(entry):
            continue
        kind, used_by = entry["kind"], ", ".join(uses[name])
        key, layout = LOCATIONS[kind]
        lines.append(f"datasets.{name}.{key} (kind {kind}; for {used_by}): {layout}")
        needs = [use for use in uses[name] if use in concept_keys]
        if kind == "captions" and needs and entry.get("instances") is None and entry.get("words") is None:
            lines.append(
                f"datasets.{name}.instances (for {', '.join(needs)}, which read concepts): COCO's instances JSON "
                f"(instances_val2017.json), or give the concept words in datasets.{name}.words instead"
            )
    if lines:
        raise ValueError(
            "the run uses natural-image datasets that are not located yet; set these keys to your copies "
            "(docs/datasets.md, section Kinds, shows each layout; a dataset nothing uses may stay null):\n"
            + "\n".join(f"  - {line}" for line in lines)
        )


def _check_named_datasets(raw: dict, perplexity: float) -> None:
    """The keys of :data:`NAMED_DATASETS` name a configured dataset of their kind, and the CIFAR-10 subset
    (when counted) has more images than the t-SNE perplexity."""
    sections = {
        "tsne.cifar10": raw["tsne"],
        "decomposition.pascal_context.dataset": raw["decomposition"]["pascal_context"],
    }
    for key, kind in NAMED_DATASETS.items():
        name = sections[key][key.rsplit(".", 1)[1]]
        if name is None:
            continue
        of_kind = _datasets_of_kind(raw["datasets"], kind)
        _check_names("datasets", [name], raw["datasets"], key)
        if name not in of_kind:
            raise ValueError(
                f"{key} names {name!r}, a dataset of kind {raw['datasets'][name]['kind']}, but it needs a dataset of "
                f"kind {kind}; configured {kind} datasets are: {', '.join(of_kind) or 'none'}"
            )
    name = raw["tsne"]["cifar10"]
    n = None if name is None else raw["datasets"][name].get("n_images")
    if n is not None and perplexity >= n:
        raise ValueError(
            f"tsne.perplexity = {perplexity} must be below the {n} CIFAR-10 images of datasets.{name}.n_images "
            "(t-SNE needs perplexity < number of images)"
        )


def _check_names(kind: str, requested, configured, key: str | None = None) -> None:
    """Raise ValueError naming `key` and the configured names if `requested` has a name not in `configured`."""
    unknown = [name for name in requested if name not in configured]
    if unknown:
        where = key or f"analyses.{kind}"
        valid = ", ".join(sorted(configured))
        raise ValueError(f"{where} names unknown {kind} {unknown}; configured {kind} are: {valid}")


def _check_natural_analyses(raw: dict) -> None:
    """Natural-image datasets in analyses.datasets get the store, Algorithm 1 over their concepts and, first
    in the list, the SAEs: a captions dataset needs concepts (COCO instances or words), text-tower extraction
    sites need captions, and SAEs evaluated on an image folder need zeroshot.templates (the downstream
    metrics classify over its classes with its zero-shot classifier; ImageNet has default templates)."""
    datasets = raw["datasets"]
    natural = [name for name in raw["analyses"]["datasets"] if datasets[name]["kind"] in NATURAL_KINDS]
    for name in natural:
        entry = datasets[name]
        if entry["kind"] == "captions" and entry.get("instances") is None and entry.get("words") is None:
            raise ValueError(
                f"analyses.datasets names the captions dataset {name!r}, which has no concepts for Algorithm 1: "
                f"set datasets.{name}.words (words or phrases found in the captions) or datasets.{name}.instances "
                "(COCO's instances file)"
            )
    sites_of = _extraction_sites(raw)
    analysed = raw["analyses"]["models"]
    text_sites = sorted({site for model in analysed for site in sites_of[model] if site.startswith("text.")})
    uncaptioned = [name for name in natural if datasets[name]["kind"] != "captions"]
    if text_sites and uncaptioned:
        raise ValueError(
            f"extraction.sites has text-tower sites {text_sites}, which read a caption per image, but "
            f"analyses.datasets {uncaptioned} have no captions: drop those sites or those datasets"
        )
    first = raw["analyses"]["datasets"][0]
    kind = datasets[first]["kind"]
    has_saes = any(sites for sites in _sae_sites_by_model(raw["sae"]).values())
    if has_saes and kind in CLASS_KINDS and kind != "imagenet" and raw["zeroshot"]["templates"] is None:
        raise ValueError(
            f"the SAEs train on analyses.datasets[0] = {first!r}, a natural-image dataset of kind {kind}, and "
            "their evaluation classifies its images zero-shot over its classes (methods.md Sec. 7.4), but "
            "zeroshot.templates is null: list prompt templates that suit its classes, each with one {} for "
            "the class name (e.g. ['a photo of a {}.'])"
        )


def _datasets_of_kind(datasets: Mapping, kind: str) -> list[str]:
    """The names of the datasets of a kind, sorted (entries are mappings or dataset sections)."""
    kinds = {name: entry["kind"] if isinstance(entry, Mapping) else entry.kind for name, entry in datasets.items()}
    return sorted(name for name, entry_kind in kinds.items() if entry_kind == kind)


def _normalise(raw: dict) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Resolve the keys whose default is another key and run every cross-key check, in place and in the
    order a config is read: names, models, datasets, counts, SAE sites, MiCLIP, shift bases, the atlas.
    Returns sae.sites per model of sae.models and the shift dataset of each base."""
    _check_names("models", raw["analyses"]["models"], raw["models"])
    _check_names("datasets", raw["analyses"]["datasets"], raw["datasets"])
    _check_names("models", raw["decomposition"]["models"], raw["models"], "decomposition.models")
    pairs = _datasets_of_kind(raw["datasets"], "pairs")
    if raw["patching"]["models"] is None:
        raw["patching"]["models"] = list(raw["analyses"]["models"])
    if raw["patching"]["datasets"] is None:
        raw["patching"]["datasets"] = pairs
    _check_names("models", raw["patching"]["models"], raw["models"], "patching.models")
    traceable = sorted(name for kind in TRACING_KINDS for name in _datasets_of_kind(raw["datasets"], kind))
    _check_names("pairs or captions datasets", raw["patching"]["datasets"], traceable, "patching.datasets")
    _check_caption_tracing(raw)
    _check_concepts(raw)
    if raw["sae"]["models"] is None:
        raw["sae"]["models"] = list(raw["analyses"]["models"])
    _check_names("models", raw["sae"]["models"], raw["models"], "sae.models")
    _check_natural_analyses(raw)
    sae_sites = _sae_sites_by_model(raw["sae"])
    _check_models_and_counts(raw)
    _check_towers(raw, sae_sites)
    _check_extraction(raw, sae_sites)
    _check_patching(raw)
    _check_sae_sites(raw["extraction"], sae_sites)
    _check_sae(raw, sae_sites)
    _check_miclip(raw, sae_sites)
    if raw["miclip"]["dataset"] is None:
        raw["miclip"]["dataset"] = raw["analyses"]["datasets"][0]
    _check_miclip_counts(raw, sae_sites)
    shift_of = _shift_of(raw["datasets"])
    _check_atlas(raw)
    _check_zeroshot(raw)
    _check_decomposition_datasets(raw)
    # Algorithm 1's k has one owner: selectivity.k.
    k = raw["selectivity"]["k"]
    for section, key in ((raw["miclip"], "k_top"), (raw["sae"]["evaluate"], "entropy_k"), (raw["atlas"], "k")):
        if section[key] is None:
            section[key] = k
    return sae_sites, shift_of


def _has_classes(entry: Mapping) -> bool:
    """A natural-image dataset with one class per image (:data:`CLASS_KINDS`)."""
    return entry["kind"] in CLASS_KINDS


def _check_zeroshot(raw: dict) -> None:
    """zeroshot.models (default analyses.models) are models; zeroshot.datasets (default every located dataset
    with one class per image, :func:`_located`) have one class per image; templates are given unless every one is ImageNet.
    Fills both defaults in place."""
    section = raw["zeroshot"]
    if section["models"] is None:
        section["models"] = list(raw["analyses"]["models"])
    _check_names("models", section["models"], raw["models"], "zeroshot.models")
    classified = sorted(name for name, entry in raw["datasets"].items() if _has_classes(entry))
    defaulted = " (null: every located dataset with classes)" if section["datasets"] is None else ""
    if section["datasets"] is None:
        section["datasets"] = [name for name in classified if _located(raw["datasets"][name])]
    for name in section["datasets"]:
        _check_names("datasets", [name], raw["datasets"], "zeroshot.datasets")
        if name not in classified:
            kind = raw["datasets"][name]["kind"]
            reason = (
                f"a {kind} dataset has no single class per image (its categories are several per image, or none)"
                if kind in NATURAL_KINDS
                else f"kind {kind} is synthetic; the Shapes analyses classify its attributes zero-shot themselves"
            )
            raise ValueError(
                f"zeroshot.datasets names {name!r}, which has no classes to classify: {reason}; datasets with "
                f"classes are: {', '.join(classified) or 'none configured'}"
            )
    others = [name for name in section["datasets"] if raw["datasets"][name]["kind"] != "imagenet"]
    if others and section["templates"] is None:
        raise ValueError(
            f"zeroshot.templates is null, but zeroshot.datasets{defaulted} {others} are not ImageNet: list prompt "
            "templates that suit their classes, each with one {} for the class name (e.g. ['a photo of a {}.']), "
            "or list in zeroshot.datasets only the datasets to classify"
        )


def _check_decomposition_datasets(raw: dict) -> None:
    """decomposition.datasets (default: the synthetic datasets of analyses.datasets, filled in place) name
    datasets of :data:`DECOMPOSITION_KINDS`; those of a kind with classes other than imagenet need
    zeroshot.templates (their accuracy is scored over their classes, methods.md Sec. 5.2)."""
    section, datasets = raw["decomposition"], raw["datasets"]
    if section["datasets"] is None:
        section["datasets"] = [d for d in raw["analyses"]["datasets"] if datasets[d]["kind"] not in NATURAL_KINDS]
        return
    _check_names("datasets", section["datasets"], datasets, "decomposition.datasets")
    allowed = sorted(name for name, entry in datasets.items() if entry["kind"] in DECOMPOSITION_KINDS)
    for name in section["datasets"]:
        kind = datasets[name]["kind"]
        if kind not in DECOMPOSITION_KINDS:
            raise ValueError(
                f"decomposition.datasets names {name!r}, a dataset of kind {kind}: the decomposition scores zero-shot "
                f"accuracy on Shapes attribute tasks or over one class per image, so it needs a dataset of kind "
                f"{', '.join(DECOMPOSITION_KINDS)}; such datasets configured: {', '.join(allowed) or 'none'}"
            )
    others = [
        d for d in section["datasets"] if datasets[d]["kind"] in CLASS_KINDS and datasets[d]["kind"] != "imagenet"
    ]
    if others and raw["zeroshot"]["templates"] is None:
        raise ValueError(
            f"decomposition.datasets {others} are scored over their classes with their zero-shot classifier, but "
            "zeroshot.templates is null (only ImageNet has default templates): list prompt templates that suit "
            "their classes, each with one {} for the class name (e.g. ['a photo of a {}.'])"
        )


def _extraction_sites(raw: dict) -> dict[str, list[str]]:
    """extraction.sites per configured model (:meth:`Extraction.sites_of`); a mapping may name only models."""
    sites = raw["extraction"]["sites"]
    if not isinstance(sites, dict):
        return {model: list(sites) for model in raw["models"]}
    _check_names("models", list(sites), raw["models"], "extraction.sites (a mapping of models)")
    return {model: list(sites.get(model, [MLP_SITES])) for model in raw["models"]}


def _sae_sites_by_model(sae: dict) -> dict[str, list[str]]:
    """sae.sites per model of sae.models: the one list for each, or each model's own list of a mapping."""
    sites, models = sae["sites"], sae["models"]
    if not isinstance(sites, dict):
        return {model: list(sites) for model in models}
    _check_names("models", list(sites), models, "sae.sites (a mapping of sae.models)")
    missing = [model for model in models if model not in sites]
    if missing:
        raise ValueError(
            f"sae.sites maps models to their sites but has no entry for {missing} of sae.models = "
            f"{models}: add one (an empty list for no SAE)"
        )
    return {model: list(sites[model]) for model in models}


def _allowed(value, valid, n: int = 8) -> str:
    """The valid values, or, when there are many, the n closest to `value` and the count."""
    valid = sorted(valid)
    if len(valid) <= n:
        return ", ".join(valid)
    close = difflib.get_close_matches(str(value), valid, n=n, cutoff=0.0)
    return f"{', '.join(close)} (closest of {len(valid)})"


def _check_model(name: str, entry: Mapping, architectures, pretrained_tags: Mapping) -> None:
    """Exactly one of `pretrained` and `train`; size overrides only without `train`; sha256 only of a local
    checkpoint; the architecture and the pretrained tag in open_clip's tables (hub / local-dir architectures
    are checked on loading)."""
    key = f"models.{name}"
    has_pretrained, has_train = "pretrained" in entry, "train" in entry
    if has_pretrained == has_train:
        raise ValueError(
            f"{key} needs exactly one of `pretrained` (an open_clip tag, a local checkpoint path, "
            "or null for random weights) and `train` (the pipeline trains it), got "
            + ("both" if has_train else "neither")
        )
    sized = [size for size in ("image_size", "context_length") if entry.get(size) is not None]
    if has_train and sized:
        raise ValueError(
            f"{key}.{sized[0]} resizes a loaded architecture, but {key} is trained by the pipeline at its "
            f"architecture's sizes: drop {key}.{sized[0]} (a trained model's render size is {key}.train.image_size)"
        )
    if "sha256" in entry and not is_local_checkpoint(entry.get("pretrained")):
        raise ValueError(
            f"{key}.sha256 checks a local checkpoint file, but {key}.pretrained is "
            f"{entry.get('pretrained')!r}; drop `sha256`, or point `pretrained` at the file "
            "(a pipeline-trained checkpoint is checked against its training record)"
        )
    arch = entry["architecture"]
    if arch.startswith(catalogue.OPEN_CLIP_SCHEMES):
        return
    if arch not in architectures:
        raise ValueError(
            f"{key}.architecture = {arch!r} is not an open_clip architecture; valid: "
            f"{_allowed(arch, architectures)} (open_clip.list_models() after "
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
                f"tags of {arch}: {_allowed(tag, tags)}"
                if tags
                else f"{arch} has no open_clip weights: use a checkpoint path, null, or `train`"
            )
        )


def _check_object_counts(key: str, entry: Mapping, default_max: int) -> None:
    low, high = entry.get("min_objects", 1), entry.get("max_objects", default_max)
    if low > high:
        raise ValueError(
            f"{key}.min_objects = {low} exceeds {key}.max_objects = {high}: "
            "the object counts run from min_objects to max_objects"
        )


def _miclip_sites(architecture: str) -> list[str] | None:
    """The valid MiCLIP sites of an architecture, or None when it is not known at parse time."""
    facts = catalogue.vision_layers(architecture)
    if facts is None:
        return None
    is_resnet, n_layers = facts
    hooks = ("hook_resid_post",) if is_resnet else CHANNEL_HOOKS
    return [f"visual.blocks.{layer}.{hook}" for layer in range(n_layers) for hook in hooks]


def _check_models_and_counts(raw: dict) -> None:
    """Models against open_clip's tables, object counts, k and the perplexity against the images, the
    datasets named for one rule (:func:`_check_named_datasets`), the OMP sparsities."""
    architectures = catalogue.architectures()
    pretrained_tags = catalogue.pretrained_tags()
    for name, entry in raw["models"].items():
        _check_model(name, entry, architectures, pretrained_tags)
        if "train" in entry:
            _check_object_counts(f"models.{name}.train", entry["train"], 5)
    for name, entry in raw["datasets"].items():
        _check_object_counts(f"datasets.{name}", entry, 3 if entry["kind"] == "shift" else 5)
    k, perplexity = raw["selectivity"]["k"], raw["tsne"]["perplexity"]
    for name in raw["analyses"]["datasets"]:
        entry = raw["datasets"][name]
        n = DATASET_KINDS[entry["kind"]].from_mapping(entry).n_images
        if n is None:  # a whole natural-image dataset: counted when it is indexed
            continue
        if k > n:
            raise ValueError(
                f"selectivity.k = {k} exceeds the {n} images of dataset {name!r} "
                "(k must be at most the number of images)"
            )
        if entry["kind"] not in NATURAL_KINDS and perplexity >= n:
            raise ValueError(
                f"tsne.perplexity = {perplexity} must be below the {n} images of dataset "
                f"{name!r} (t-SNE needs perplexity < number of images)"
            )
    _check_named_datasets(raw, perplexity)
    text = raw["decomposition"]["text"]
    too_large = [m for m in text["m_values"] if m > text["n_components"]]
    if raw["decomposition"]["models"] and too_large:
        raise ValueError(
            f"decomposition.text.m_values {too_large} exceed decomposition.text.n_components = "
            f"{text['n_components']}: each sparsity must be at most n_components"
        )


def _check_sae_sites(extraction: dict, sae_sites: Mapping[str, list[str]]) -> None:
    """Every SAE site is in its model's activation store (:meth:`Extraction.stores`)."""
    stored = Extraction.from_mapping(extraction)
    for model, sites in sae_sites.items():
        missing = [site for site in sites if not stored.stores(site, model)]
        if missing:
            key = f"extraction.sites.{model}" if isinstance(extraction["sites"], dict) else "extraction.sites"
            raise ValueError(
                f"sae.sites {missing} of {model!r} are not stored by {key} = {list(stored.sites_of(model))} "
                f"(extraction.layers = {extraction['layers']}, save_tokens = "
                f"{extraction['save_tokens']}): add them to {key} so the activation "
                "store holds them (hook_mlp_out also needs extraction.save_tokens: true)"
            )


def _check_miclip(raw: dict, sae_sites: Mapping[str, list[str]]) -> None:
    section = raw["miclip"]
    if not section["units"]:
        return
    shapes = _datasets_of_kind(raw["datasets"], "shapes")
    _check_names("models", list(section["units"]), raw["models"], "miclip.units")
    _check_names("models", [section["reference"]], raw["models"], "miclip.reference")
    natural = sorted(name for name, entry in raw["datasets"].items() if entry["kind"] in NATURAL_KINDS)
    if section["dataset"] is not None:
        _check_names("shapes or natural-image datasets", [section["dataset"]], shapes + natural, "miclip.dataset")
    elif raw["datasets"][raw["analyses"]["datasets"][0]]["kind"] not in ("shapes", *NATURAL_KINDS):
        raise ValueError(
            f"miclip.dataset is null and analyses.datasets[0] = "
            f"{raw['analyses']['datasets'][0]!r} is not a Shapes or natural-image dataset; name one of "
            f"{', '.join(shapes + natural)}"
        )
    dataset = section["dataset"] or raw["analyses"]["datasets"][0]
    if dataset in natural:
        _check_miclip_natural(raw, dataset)
    if sorted(section["losses"]) != ["both", "input", "output"]:
        raise ValueError(
            f"miclip.losses = {section['losses']}: the evaluation compares all three losses, "
            "list both, input and output"
        )
    for model, unit_sets in section["units"].items():
        valid = _miclip_sites(raw["models"][model]["architecture"])
        seen = set()
        for entry in unit_sets:
            site, kind = entry["site"], entry["kind"]
            if (site, kind) in seen:
                raise ValueError(
                    f"miclip.units.{model} lists the unit set {{site: {site}, kind: {kind}}} twice: "
                    "each (site, kind) of a model once"
                )
            seen.add((site, kind))
            if valid is not None and site not in valid:
                raise ValueError(
                    f"miclip.units.{model}: unknown site {site!r}; valid sites are: {_allowed(site, valid)}"
                )
            if kind == "sae" and site not in sae_sites.get(model, []):
                raise ValueError(
                    f"miclip.units.{model}: kind sae at {site} needs the SAE of rule train_sae "
                    f"there, but sae.models = {raw['sae']['models']} and sae.sites = "
                    f"{raw['sae']['sites']}; add {model} and {site} to them"
                )
            if kind == "sae" and raw["sae"]["tokens"] == "class":
                raise ValueError(
                    f"miclip.units.{model}: kind sae at {site} reads a latent per image as its maximum over "
                    "the patch tokens (methods.md Sec. 9.3), but sae.tokens = class trains the SAE on the "
                    "class token only; set sae.tokens to patch or all"
                )


def _check_miclip_natural(raw: dict, dataset: str) -> None:
    """A natural-image miclip.dataset (methods.md Sec. 9.8): its concepts are its classes, COCO or PASCAL Context
    categories or words (a captions dataset needs ``instances`` or ``words``), and the classifier of a dataset
    with classes other than ImageNet (which has default templates) needs zeroshot.templates."""
    entry = raw["datasets"][dataset]
    if entry["kind"] == "captions" and entry.get("instances") is None and entry.get("words") is None:
        raise ValueError(
            f"miclip.dataset {dataset!r} is a captions dataset without concepts for MiCLIP to describe units "
            f"with: set datasets.{dataset}.words (words or phrases found in the captions) or "
            f"datasets.{dataset}.instances (COCO's instances file)"
        )
    if entry["kind"] in CLASS_KINDS and entry["kind"] != "imagenet" and raw["zeroshot"]["templates"] is None:
        raise ValueError(
            f"miclip.dataset {dataset!r} is of kind {entry['kind']}, and MiCLIP's Delta Acc classifies its images zero-shot "
            "over its classes (methods.md Sec. 9.8), but zeroshot.templates is null: list prompt templates that "
            "suit its classes, each with one {} for the class name (e.g. ['a photo of a {}.'])"
        )


def _n_images(raw: dict, dataset: str) -> int | None:
    """The images of a dataset (:attr:`Shapes.n_images` and its kin); None for a whole natural-image dataset
    (its size is known once it is indexed)."""
    entry = raw["datasets"][dataset]
    return DATASET_KINDS[entry["kind"]].from_mapping(entry).n_images


def _n_heldout(key: str, holdout: float, dataset: str, n_images: int, why: str) -> int:
    """round(holdout x n_images), the held-out images of a split (clipmech.sae.streaming.split_images,
    clipmech.miclip.units.split_images); raises ValueError unless it leaves an image on either side."""
    n_heldout = int(round(holdout * n_images))
    if not 0 < n_heldout < n_images:
        raise ValueError(
            f"{key} = {holdout} holds out {n_heldout} of the {n_images} images of dataset {dataset!r} "
            f"(round({holdout} x {n_images})), but {why}: give a fraction that holds out 1 to "
            f"{n_images - 1} images (about {1 / n_images:.3g} to {(n_images - 1) / n_images:.3g})"
        )
    return n_heldout


def _check_towers(raw: dict, sae_sites: Mapping[str, list[str]]) -> None:
    """The vision tower each analysis reads: a transformer for analyses.models and the SAEs, a
    ModifiedResNet for decomposition.models (catalogue.is_resnet; unknown architectures pass)."""
    needs = (
        (
            "analyses.models",
            raw["analyses"]["models"],
            False,
            "the shapes-paper stores and analyses read the "
            "MLP outputs of a transformer's blocks; decompose a CLIP-ResNet with decomposition.models instead",
        ),
        (
            "decomposition.models",
            raw["decomposition"]["models"],
            True,
            "the decomposition reads the attention pool of a CLIP-ResNet (a ModifiedResNet, such as RN50 or RN50x16)",
        ),
        (
            "sae.models",
            [model for model, sites in sae_sites.items() if sites],
            False,
            "the SAEs train on the tokens of a transformer's sites; drop it from sae.models or give it no sae.sites",
        ),
    )
    for key, models, resnet, why in needs:
        for model in models:
            arch = raw["models"][model]["architecture"]
            is_resnet = catalogue.is_resnet(arch)
            if is_resnet is not None and is_resnet != resnet:
                tower = "a CLIP-ResNet (ModifiedResNet)" if is_resnet else "a transformer"
                raise ValueError(
                    f"{key} names {model!r}, whose architecture {arch} has {tower} vision tower, but {why}"
                )


def _stored_models(raw: dict, sae_sites: Mapping[str, list[str]]) -> list[str]:
    """Models with an activation store: analyses.models and the models with SAE sites."""
    return list(dict.fromkeys([*raw["analyses"]["models"], *(model for model, sites in sae_sites.items() if sites)]))


def _check_layer(key: str, model: str, arch: str, tower: str, layers) -> None:
    """Raise ValueError naming `key` if a layer is beyond the blocks of the model's tower (unknown: pass)."""
    n = catalogue.tower_layers(arch, tower)
    beyond = sorted({layer for layer in layers if n is not None and layer >= n})
    if beyond:
        raise ValueError(
            f"{key}: layers {beyond} are beyond the {n} {tower} blocks of {model!r} ({arch}); valid layers: 0..{n - 1}"
        )


def _check_extraction(raw: dict, sae_sites: Mapping[str, list[str]]) -> None:
    """extraction.layers and the layers of extraction.sites within the blocks of every stored model, no fp16
    extraction.precision on extraction.device cpu, and selectivity.reduction among extraction.reductions."""
    extraction = raw["extraction"]
    sites_of = _extraction_sites(raw)
    for model in _stored_models(raw, sae_sites):
        arch = raw["models"][model]["architecture"]
        if extraction["layers"] is not None:
            _check_layer("extraction.layers", model, arch, "visual", extraction["layers"])
        for site in sites_of.get(model, [MLP_SITES]):
            match = BLOCK_PATTERN.fullmatch(site)
            if match is not None and match.group(2) != "*":
                _check_layer(f"extraction.sites {site}", model, arch, match.group(1), [int(match.group(2))])
    if extraction["precision"] == "fp16" and extraction["device"] == "cpu":
        raise ValueError(
            "extraction.precision = 'fp16' needs a CUDA device, and extraction.device = 'cpu': on a CPU use "
            "bf16 or fp32 (torch autocasts to bf16 on CPUs too)"
        )
    reduction = raw["selectivity"]["reduction"]
    if reduction not in extraction["reductions"]:
        raise ValueError(
            f"selectivity.reduction = {reduction!r} is not stored: extraction.reductions = {extraction['reductions']}; "
            f"rank by one of {', '.join(extraction['reductions'])}, or add {reduction} to extraction.reductions"
        )


def _check_patching(raw: dict) -> None:
    """A non-empty family list for every tower kind causal tracing runs: transformer (every text tower,
    ViT vision towers) and resnet (the vision tower of a CLIP-ResNet)."""
    patching = raw["patching"]
    if not (patching["models"] and patching["datasets"]):
        return
    families = patching["families"]
    resnets = [m for m in patching["models"] if catalogue.is_resnet(raw["models"][m]["architecture"])]
    if not families["transformer"]:
        raise ValueError(
            f"patching.families.transformer is empty, but causal tracing runs the text tower (a transformer) of "
            f"every model of patching.models {patching['models']}; list some of resid_pre, attn_out, mlp_out, "
            "head, neuron"
        )
    if resnets and not families["resnet"]:
        raise ValueError(
            f"patching.families.resnet is empty, but patching.models {resnets} are CLIP-ResNets; list some of "
            "stage, pool_token, pool_head, pool_neuron (or drop them from patching.models)"
        )
    if patching["layers"] is not None:
        for model in patching["models"]:
            arch = raw["models"][model]["architecture"]
            depth = max(
                filter(None, (catalogue.tower_layers(arch, tower) for tower in ("visual", "text"))), default=None
            )
            beyond = [layer for layer in patching["layers"] if depth is not None and layer >= depth]
            if beyond:
                raise ValueError(
                    f"patching.layers {beyond} are beyond the {depth} blocks of the deeper tower of {model!r} ({arch}); "
                    f"valid layers: 0..{depth - 1}"
                )


def _check_caption_tracing(raw: dict) -> None:
    """A captions dataset in patching.datasets (methods.md Sec. 8.1) runs the embedding corruptions of
    `patching.corruptions` (the minimal-pair ones run on the pairs datasets only), so the list needs one; with
    `patching.foil.kind` object it needs concept nouns to swap (`words` or COCO `instances`)."""
    patching = raw["patching"]
    captions = [name for name in patching["datasets"] if raw["datasets"][name]["kind"] == "captions"]
    if not captions:
        return
    if not any(corruption in CAPTION_CORRUPTIONS for corruption in patching["corruptions"]):
        raise ValueError(
            f"patching.corruptions lists {list(patching['corruptions'])}, Shapes minimal pairs only, but "
            f"patching.datasets names the captions dataset(s) {captions}, which run the embedding corruptions "
            f"only: add at least one of {', '.join(CAPTION_CORRUPTIONS)} to patching.corruptions"
        )
    if patching["foil"]["kind"] != "object":
        return
    for name in captions:
        entry = raw["datasets"][name]
        if entry.get("words") is None and entry.get("instances") is None:
            raise ValueError(
                f"patching.datasets names the captions dataset {name!r} and patching.foil.kind is object, but it has "
                f"no object nouns to swap: set datasets.{name}.words (words or phrases found in the captions) or "
                f"datasets.{name}.instances (COCO's instances file), or set patching.foil.kind: attribute"
            )


def _check_concepts(raw: dict) -> None:
    """patching.concepts.datasets (default: patching.datasets, filled in place) names datasets with concepts
    (:data:`CONCEPT_KINDS`; a captions dataset with `words` or `instances`), methods.md Sec. 8.5."""
    concepts = raw["patching"]["concepts"]
    if concepts["datasets"] is None:
        concepts["datasets"] = list(raw["patching"]["datasets"])
    _check_names("datasets", concepts["datasets"], raw["datasets"], "patching.concepts.datasets")
    for name in concepts["datasets"]:
        reason = _no_concepts(name, raw["datasets"][name])
        if reason is not None:
            raise ValueError(f"patching.concepts.datasets names {name!r}, but {reason}")


def _sae_latents(sae: Mapping, model: str, arch: str, site: str) -> tuple[int, str] | None:
    """(n, how n was got) of the SAE of `model` at `site`: sae.n_latents, or sae.expansion x the site's
    width (catalogue.site_width; None when the width is unknown at parse time)."""
    if sae["n_latents"] is not None:
        return sae["n_latents"], f"sae.n_latents = {sae['n_latents']}"
    d = catalogue.site_width(arch, *block_site(site))
    if d is None:
        return None
    n, expansion = sae["expansion"] * d, sae["expansion"]
    how = f"sae.expansion = {expansion} x d = {d}, the width of {site} of {model!r} ({arch})"
    if round(n) < 1 or abs(n - round(n)) > 1e-9:
        problem = "fewer than one" if n < 1 - 1e-9 else "not a whole number"
        raise ValueError(
            f"{how} gives {n:g} latents, {problem}; set an expansion that gives a positive integer, or "
            "sae.n_latents (it overrides expansion)"
        )
    return int(round(n)), how


def _check_sae(raw: dict, sae_sites: Mapping[str, list[str]]) -> None:
    """Of every planned SAE: the site's layer within the tower, k at most the latents, the buffer at
    least one zarr chunk of the store, a token budget of at least one batch, and a holdout that leaves
    images on both sides."""
    sae = raw["sae"]
    planned = [(model, site) for model, sites in sae_sites.items() for site in sites]
    if not planned:
        return
    if sae["n_tokens"] < sae["batch_size"]:
        raise ValueError(
            f"sae.n_tokens = {sae['n_tokens']} is under one batch of sae.batch_size = {sae['batch_size']} tokens: "
            f"training runs n_tokens // batch_size = 0 steps; set sae.n_tokens to at least {sae['batch_size']}"
        )
    dataset = raw["analyses"]["datasets"][0]
    n_images = _n_images(raw, dataset)
    why = "rule train_sae trains on the others and evaluate_sae measures on the held-out ones"
    batch = raw["extraction"]["batch_size"]
    if n_images is None:  # a whole natural-image dataset: counted when it is indexed (train_sae checks then)
        n_train, at_most = batch, "its size is known once it is indexed"
    else:
        n_train = n_images - _n_heldout("sae.holdout", sae["holdout"], dataset, n_images, why)
        at_most = f"at most the {n_train} training images"
    for model, site in planned:
        arch = raw["models"][model]["architecture"]
        tower, layer, _ = block_site(site)
        _check_layer(f"sae.sites {site} of {model}", model, arch, tower, [layer])
        if tower == "text" and sae["tokens"] != "all":
            raise ValueError(
                f"sae.tokens = {sae['tokens']}, but the SAE of {model!r} at the text-tower site {site} trains on "
                "every token of the caption: set sae.tokens to all"
            )
        latents = _sae_latents(sae, model, arch, site)
        if latents is not None and sae["k"] > latents[0]:
            raise ValueError(
                f"sae.k = {sae['k']} exceeds the {latents[0]} latents of the SAE of {model!r} at {site} "
                f"({latents[1]}): TopK keeps k latents per token, so k must be at most {latents[0]}"
            )
        sizes = {key: raw["models"][model].get(key) for key in ("image_size", "context_length")}
        tokens = catalogue.tokens_per_input(arch, tower, **sizes)
        if tokens is None:
            continue
        prefix, rest = tokens
        per_image = {"patch": rest, "class": 1, "all": prefix + rest}[sae["tokens"]] if tower == "visual" else rest
        images = min(batch, n_train)
        chunk = images * per_image
        if sae["buffer_tokens"] < chunk:
            raise ValueError(
                f"sae.buffer_tokens = {sae['buffer_tokens']} holds less than one zarr chunk of the store of "
                f"{model!r} at {site}: {images} images (extraction.batch_size = {batch}, {at_most}) "
                f"x {per_image} tokens per image (sae.tokens = {sae['tokens']}, {arch}) = "
                f"{chunk} tokens; set sae.buffer_tokens to at least {chunk}"
            )


def _check_miclip_counts(raw: dict, sae_sites: Mapping[str, list[str]]) -> None:
    """miclip.tau at most the units of every unit set, a holdout that leaves images on both sides, and
    miclip.k_top (null: selectivity.k) at most the held-out images of miclip.dataset."""
    section = raw["miclip"]
    if not section["units"]:
        return
    for model, unit_sets in section["units"].items():
        arch = raw["models"][model]["architecture"]
        for entry in unit_sets:
            site, kind = entry["site"], entry["kind"]
            if kind == "neurons":
                width = catalogue.site_width(arch, *block_site(site))
                units = None if width is None else (width, f"the channels of {site} of {arch}")
            else:
                units = _sae_latents(raw["sae"], model, arch, site)
                units = None if units is None else (units[0], f"the latents of its SAE: {units[1]}")
            if units is not None and section["tau"] > units[0]:
                raise ValueError(
                    f"miclip.tau = {section['tau']} exceeds the {units[0]} units of the unit set "
                    f"{{site: {site}, kind: {kind}}} of miclip.units.{model} ({units[1]}): Eqs. 3 and 4 select "
                    f"tau units per concept, so tau must be at most {units[0]}"
                )
    dataset = section["dataset"]
    n_images = _n_images(raw, dataset)
    if n_images is None:  # a whole natural-image dataset: counted when it is indexed (probe_miclip checks then)
        return
    why = "the encoders train on the others and the evaluation reads the held-out ones"
    n_heldout = _n_heldout("miclip.holdout", section["holdout"], dataset, n_images, why)
    k_top = raw["selectivity"]["k"] if section["k_top"] is None else section["k_top"]
    if k_top > n_heldout:
        key = "miclip.k_top" if section["k_top"] is not None else "miclip.k_top (null: selectivity.k)"
        raise ValueError(
            f"{key} = {k_top} exceeds the {n_heldout} held-out images of miclip.dataset {dataset!r} "
            f"(round(miclip.holdout = {section['holdout']} x {n_images})): the ground truth ranks each unit's top "
            f"k_top held-out images; set miclip.k_top to at most {n_heldout} or raise miclip.holdout"
        )


def _shift_of(datasets: Mapping) -> dict[str, str]:
    """The shift dataset of each base: a dataset of kind `shift` holds the distribution-shift splits of
    its `base` (a Shapes dataset), at most one per base."""
    shift_of = {}
    shapes = _datasets_of_kind(datasets, "shapes")
    for name in _datasets_of_kind(datasets, "shift"):
        base = datasets[name]["base"]
        _check_names("shapes datasets", [base], shapes, f"datasets.{name}.base")
        if base in shift_of:
            raise ValueError(
                f"datasets {shift_of[base]} and {name} are both shift splits of {base}: "
                "declare one shift dataset per base"
            )
        shift_of[base] = name
    return shift_of


def _check_atlas(raw: dict) -> None:
    """atlas.dataset (default: analyses.datasets[0]) is analysed, and atlas.models (default: the analysed then
    the decomposed models) are analysed or decomposed; fills both defaults in place.

    A natural-image atlas.dataset gets the atlas of its activation store, Algorithm 1 over its concepts and
    the SAEs: its pages cannot read a CLIP-ResNet's decomposition, which runs on synthetic datasets only
    (:attr:`Plan.decompositions`), so the default models are then the analysed ones that are not decomposed,
    and a decomposed model named in atlas.models is refused."""
    sources = list(dict.fromkeys(raw["analyses"]["models"] + raw["decomposition"]["models"]))
    atlas = raw["atlas"]
    if atlas["dataset"] is None:
        atlas["dataset"] = raw["analyses"]["datasets"][0]
    _check_names("analysed datasets", [atlas["dataset"]], raw["analyses"]["datasets"], "atlas.dataset")
    natural = raw["datasets"][atlas["dataset"]]["kind"] in NATURAL_KINDS
    decomposed = raw["decomposition"]["models"]
    if atlas["models"] is None:
        atlas["models"] = [m for m in sources if m not in decomposed] if natural else sources
    _check_names("analysed or decomposed models", atlas["models"], sources, "atlas.models")
    resnets = [m for m in atlas["models"] if m in decomposed]
    if natural and resnets:
        kind = raw["datasets"][atlas["dataset"]]["kind"]
        raise ValueError(
            f"atlas.models names the CLIP-ResNet(s) {resnets} (decomposition.models), but atlas.dataset = "
            f"{atlas['dataset']!r} is a natural-image dataset (kind {kind}): a ResNet's atlas pages read its "
            "decomposition, which runs on synthetic datasets only; drop them from atlas.models or name a shapes "
            "dataset as atlas.dataset"
        )


def _plan(raw: dict, sae_sites: Mapping[str, list[str]], shift_of: Mapping[str, str]) -> Plan:
    analyses, decomposition, patching = raw["analyses"], raw["decomposition"], raw["patching"]
    miclip = raw["miclip"]
    miclip_models = [*miclip["units"], miclip["reference"]] if miclip["units"] else []
    used = sorted(
        set(analyses["models"])
        | set(decomposition["models"])
        | set(patching["models"])
        | {model for model, sites in sae_sites.items() if sites}
        | set(miclip_models)
        | (set(raw["zeroshot"]["models"]) if raw["zeroshot"]["datasets"] else set())
    )
    units = tuple((model, entry["site"], entry["kind"]) for model, sets in miclip["units"].items() for entry in sets)
    synthetic = [d for d in analyses["datasets"] if raw["datasets"][d]["kind"] not in NATURAL_KINDS]
    return Plan(
        used=tuple(used),
        trained=tuple(name for name in used if "train" in raw["models"][name]),
        analyses=tuple((m, d) for m in analyses["models"] for d in analyses["datasets"]),
        shapes_analyses=tuple((m, d) for m in analyses["models"] for d in synthetic),
        decompositions=tuple((m, d) for m in decomposition["models"] for d in decomposition["datasets"]),
        shapes_decompositions=tuple(
            (m, d)
            for m in decomposition["models"]
            for d in decomposition["datasets"]
            if raw["datasets"][d]["kind"] not in NATURAL_KINDS
        ),
        patchings=tuple((m, d) for m in patching["models"] for d in patching["datasets"]),
        concepts=tuple((m, d) for m in patching["models"] for d in patching["concepts"]["datasets"]),
        concept_interventions=tuple(
            (m, d)
            for m in patching["models"]
            for d in patching["concepts"]["datasets"]
            if raw["datasets"][d]["kind"] in INTERVENTION_KINDS
        ),
        sae_sites=MappingProxyType({model: tuple(sites) for model, sites in sae_sites.items()}),
        saes=tuple((m, site) for m, sites in sae_sites.items() for site in sites),
        sae_dataset=analyses["datasets"][0],
        miclip_units=units,
        miclip_sites=tuple(sorted({(model, site) for model, site, _ in units})),
        atlas_models=tuple(raw["atlas"]["models"]),
        atlas_dataset=raw["atlas"]["dataset"],
        shift_of=MappingProxyType(dict(shift_of)),
        zeroshots=tuple((m, d) for m in raw["zeroshot"]["models"] for d in raw["zeroshot"]["datasets"]),
    )
