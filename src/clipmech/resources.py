"""Each job's memory and wall time from the config: the ``mem_mb`` and ``runtime`` every rule declares.

A rule's ``resources:`` names :meth:`RuleResources.mem_mb` and :meth:`RuleResources.runtime` of its own
rule; Snakemake calls them with the job's wildcards and ``attempt`` (1 on the first submission, one more on
each retry of ``retries:`` in profiles/slurm), and both grow linearly with ``attempt``.

**Memory** (MB, powers of 1000) is an interpreter baseline plus what the stage's code holds at its peak
(:data:`ESTIMATES`, one function per rule, each naming what it counts), with :data:`MARGIN` on top. The
baselines are measured: the tiny run's jobs (tests/config/tiny.yaml) peak at 0.26 GB (numpy, pandas,
xarray) and 0.9-1.3 GB (torch and open_clip imported) of ``max_rss``; :data:`BASELINE_MB` rounds them up.
What a stage holds is counted from the config and the model's shapes (:func:`model_shape`: widths, tokens
and parameters from open_clip's model configs, as :mod:`clipmech.storage` reads them, no model built):
a model loads its float32 weights twice on the host (the module and the state dict it copies from), a
store read whole holds images x its per-image bytes, a stage that streams a store holds one chunk. What a
stage keeps on its device (activations of a batch, a model's working set) is host memory when
``extraction.device`` is ``cpu`` (``extraction.gpus`` is 0) and the GPU's otherwise.

**Runtime** (minutes) is :data:`FLOOR_MIN` plus :data:`SLACK` times the stage's FLOPs (forward passes of the
model, three per trained sample) at :data:`THROUGHPUT` of the device, plus its bytes written or read at
:data:`DISK_BPS`: a generous bound for a scheduler, not a prediction.

``python -m clipmech plan`` prints every job of the run (:func:`plan_jobs`) with both (:func:`format_jobs`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from clipmech import costs, storage
from clipmech.config import NATURAL_KINDS, Config
from clipmech.hooks.names import block_site
from clipmech.models import catalogue
from clipmech.papers.numbers import PAPERS

MB = 1e6
#: Host memory of an idle job (MB): "numpy" stages import numpy, pandas, xarray, scipy, matplotlib; "torch"
#: stages torch and open_clip (the tiny run's max_rss: 0.26 GB and 0.9-1.3 GB), "cuda" adds a CUDA context.
BASELINE_MB = {"numpy": 800, "torch": 2000, "cuda": 1500}
#: Host memory of each process that decodes a natural-image dataset (clipmech.data.loader, one per thread)
#: and the rules that start them.
DECODER_MB = 500
DECODING_RULES = frozenset(
    "extract_activations extract_activations_part extract_attnpool concept_auroc zero_shot tsne_cifar10 "
    "probe_miclip evaluate_miclip".split()
)
#: Factor on what a stage holds: allocator slack, temporaries of the same size not counted one by one.
MARGIN = 1.5
#: FLOP/s a job sustains, conservatively: float32 on one GPU, and one CPU thread.
THROUGHPUT = {"cuda": 5e12, "cpu": 5e9}
#: Bytes per second read or written (a shared file system, compressed zarr chunks).
DISK_BPS = 50e6
#: Minutes any job is given, whatever its work (startup, imports, loading a model), and the factor on the rest.
FLOOR_MIN, SLACK = 15, 3
#: Texts a zero-shot classifier or a natural dataset's concepts embed at most (ImageNet: 1000 classes x 80
#: templates).
PROMPTS = 80_000
#: Held-out images MiCLIP's evaluation preprocesses at once (clipmech.miclip.evaluation.PIXEL_CHUNK, which
#: imports torch: a test checks the two agree) and values concept AUROC ranks at once
#: (clipmech.analyses.concepts.BLOCK_VALUES).
MICLIP_PIXEL_CHUNK, AUROC_BLOCK_VALUES = 256, 1 << 21
#: The rows of an SAE unit set's spilled image-level latents buffered before a write, and the units its
#: evaluation reads at a time (clipmech.miclip.evaluation.SPILL_IMAGES, clipmech.miclip.units.UNIT_CHUNK; the
#: same test checks them).
MICLIP_SPILL_IMAGES, MICLIP_UNIT_CHUNK = 512, 256
#: Network Dissection's units and images upsampled at once and the values of a unit it sorts at most
#: (the defaults of clipmech.miclip.baselines.netdissect_iou; the same test checks them).
NETDISSECT_UNITS, NETDISSECT_IMAGES, NETDISSECT_CAP = 8, 256, 1 << 20
#: Parameters assumed for a model whose shapes are unknown before it loads (a Hugging Face hub architecture).
UNKNOWN_PARAMS = 1_000_000_000
FLOAT64, FLOAT32, FLOAT16 = 8, 4, 2


@dataclass(frozen=True)
class TowerShape:
    """What the estimates read of one tower (attribute names as :class:`clipmech.models.towers.Tower`).

    kind is "transformer" or "resnet"; width is D (ResNet: C of the final feature map); n_tokens the
    sequence length (ResNet: of the attention pool); params the tower's parameters; flops one forward pass
    of one input."""

    name: str
    kind: str
    n_layers: int
    width: int
    d_mlp: int | None
    n_heads: int
    n_tokens: int
    image_size: int
    params: int
    flops: float


@dataclass(frozen=True)
class ModelShape:
    """Both towers of a model and its embedding width."""

    visual: TowerShape
    text: TowerShape
    embed_dim: int

    @property
    def params(self) -> int:
        return self.visual.params + self.text.params


def _transformer(name: str, cfg: dict, embed: int) -> TowerShape:
    """A ViT or text tower from its open_clip config: per block 4 D^2 (attention) + 2 r D^2 (MLP) weights;
    2 FLOPs per weight and token, plus 4 T^2 D of attention per block."""
    width, layers = int(cfg["width"]), int(cfg["layers"])
    d_mlp = int(width * float(cfg["mlp_ratio"]))
    tokens = sum(catalogue.tokens_per_input(cfg["_architecture"], name, **cfg["_sizes"]))
    block = 4 * width * width + 2 * width * d_mlp
    if name == "visual":
        patch = cfg["patch_size"] if isinstance(cfg["patch_size"], int) else cfg["patch_size"][0]
        extra = 3 * patch * patch * width + tokens * width + width * embed
    else:
        extra = int(cfg.get("vocab_size", 49408)) * width + tokens * width + width * embed
    params = layers * block + extra
    flops = 2.0 * tokens * params + 4.0 * layers * tokens * tokens * width
    heads = int(cfg.get("heads", width // int(cfg.get("head_width", 64))))
    size = cfg.get("image_size", 0)
    size = size if isinstance(size, int) else size[0]
    return TowerShape(name, "transformer", layers, width, d_mlp, heads, tokens, size, params, flops)


def _resnet(cfg: dict, embed: int) -> TowerShape:
    """An open_clip ModifiedResNet: bottleneck blocks of 17 p^2 weights (p = width x 2^stage planes, plus a
    4 p x input downsampling per stage), stage s at 1/(4 x 2^s) of the image, and the attention pool."""
    width, size = int(cfg["width"]), cfg["image_size"]
    size = size if isinstance(size, int) else size[0]
    params, flops = 0, 0.0
    for stage, depth in enumerate(cfg["layers"]):
        planes = width * 2**stage
        weights = depth * 17 * planes * planes + 4 * planes * max(width, 2 * planes)
        params += weights
        flops += 2.0 * weights * catalogue.site_positions(cfg["_architecture"], "visual", stage, **cfg["_sizes"])
    channels, tokens = 32 * width, (size // 32) ** 2 + 1
    pool = tokens * channels + 3 * channels * channels + channels * embed
    heads = channels // int(cfg.get("head_width", 64))
    params += pool
    flops += 2.0 * pool * tokens
    return TowerShape("visual", "resnet", len(cfg["layers"]), channels, None, heads, tokens, size, params, flops)


def _from_meta(architecture: str, embed: int, sizes: dict) -> ModelShape:
    """The shapes of a model open_clip builds on PyTorch's meta device (a timm or Hugging Face tower): its
    parameters counted, its FLOPs as a transformer's (2 per weight and token, 4 T^2 D of attention per block)."""
    from clipmech.models import loading
    from clipmech.models.towers import tower

    clip = loading.meta_model(architecture, **sizes)
    towers = {}
    for name in ("visual", "text"):
        info = tower(clip, name)
        module = clip.visual if name == "visual" else clip
        params = sum(p.numel() for n, p in module.named_parameters() if name == "visual" or not n.startswith("visual"))
        kind = "resnet" if info.kind == "resnet" else "transformer"
        size = info.image_size[0] if info.image_size else 0
        flops = 2.0 * params * info.n_tokens + 4.0 * info.n_layers * info.n_tokens**2 * info.width
        towers[name] = TowerShape(
            name, kind, info.n_layers, info.width, info.d_mlp, info.n_heads, info.n_tokens, size, params, flops
        )
    return ModelShape(towers["visual"], towers["text"], embed)


def _unknown() -> ModelShape:
    """:data:`UNKNOWN_PARAMS` split between a ViT-L-sized visual tower and a text tower."""
    half = UNKNOWN_PARAMS // 2
    visual = TowerShape("visual", "transformer", 32, 1280, 5120, 16, 577, 336, half, 2.0 * 577 * half)
    text = TowerShape("text", "transformer", 24, 1024, 4096, 16, 77, 0, half, 2.0 * 77 * half)
    return ModelShape(visual, text, 1024)


@functools.cache
def model_shape(architecture: str, image_size: int | None = None, context_length: int | None = None) -> ModelShape:
    """The shapes of an open_clip architecture at the sizes a config may override (``models.<name>.image_size``,
    ``context_length``): from its config file (no torch) when both towers are open_clip's own; else from the
    model built on the meta device; else (a hub architecture) :func:`_unknown`."""
    sizes = {"image_size": image_size, "context_length": context_length}
    config = catalogue.model_config(architecture, **sizes)
    if config is None:
        return _unknown()
    embed = int(config["embed_dim"])
    visual = {**catalogue.VISION_DEFAULTS, **config["vision_cfg"], "_architecture": architecture, "_sizes": sizes}
    text = {**catalogue.TEXT_DEFAULTS, **config.get("text_cfg", {}), "_architecture": architecture, "_sizes": sizes}
    if "timm_model_name" in visual or "hf_model_name" in text:
        try:
            return _from_meta(architecture, embed, sizes)
        except Exception:  # noqa: BLE001 - a tower whose package is missing: sized as unknown
            return _unknown()
    tower = _resnet(visual, embed) if isinstance(visual["layers"], list) else _transformer("visual", visual, embed)
    return ModelShape(tower, _transformer("text", text, embed), embed)


@dataclass(frozen=True)
class Estimate:
    """What one job holds and computes.

    Attributes
    ----------
    host : dict of str to float
        Bytes held in host memory at the peak, by what holds them.
    device : dict of str to float
        Bytes held where the model runs: host memory on ``cpu``, the GPU's otherwise.
    flops : float
        Floating-point operations (forward and backward passes).
    io_bytes : float
        Bytes read or written.
    torch : bool
        Whether the stage imports torch (the baseline).
    """

    host: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    flops: float = 0.0
    io_bytes: float = 0.0
    torch: bool = True


class RuleResources:
    """``mem_mb`` and ``runtime`` of every rule's jobs under one config (module docstring)."""

    def __init__(self, config: Config, workdir: str = "."):
        self.config = config
        self.workdir = workdir
        self.gpus = config.extraction.gpus
        self.device = "cuda" if self.gpus else "cpu"

    # --- what the estimates read ---------------------------------------------------------------------
    @functools.cache  # noqa: B019 - one instance per config, kept for the run
    def images(self, dataset: str) -> int:
        """Images of a dataset (:func:`clipmech.storage.dataset_images`); 0 when unknown."""
        return storage.dataset_images(self.config, dataset, self.workdir) or 0

    def shape(self, model: str) -> ModelShape:
        return model_shape(self.config.models[model].architecture, **self.config.models[model].sizes)

    def weights(self, model: str) -> dict:
        """A loaded model: its float32 weights twice (the module and the state dict loaded into it)."""
        return {f"{model} weights": 2 * FLOAT32 * self.shape(model).params}

    def per_image(self, store: Callable, model: str, dataset: str) -> float | None:
        """Bytes per image of a store of :mod:`clipmech.storage` (``store``: its estimate function): its size at
        two images less its size at one, without what does not grow with N; None when it is not estimated."""
        one, two = (store(self.config, model, dataset, n).nbytes for n in (1, 2))
        return None if one is None else float(two - one)

    def store_per_image(self, model: str, dataset: str) -> float:
        """Bytes per image of the activation store (:func:`clipmech.storage.activation_store`); a model whose
        shapes are known only once built: every layer's tokens, float16."""
        per_image = self.per_image(storage.activation_store, model, dataset)
        if per_image is not None:
            return per_image
        visual = self.shape(model).visual
        return float(visual.n_layers * visual.n_tokens * visual.width * FLOAT16)

    def estimate(self, rule: str, wildcards) -> Estimate:
        """The :class:`Estimate` of one job of ``rule``.

        Raises
        ------
        KeyError
            If ``rule`` has no entry in :data:`ESTIMATES`.
        """
        return ESTIMATES[rule](self, _Wildcards(dict(wildcards.items()) if hasattr(wildcards, "items") else wildcards))

    def memory_mb(self, rule: str, wildcards, threads: int = 1) -> int:
        """Host memory of one job in MB (first attempt), rounded up to 100 MB; ``threads`` decoding processes
        when the rule decodes a natural-image dataset."""
        estimate = self.estimate(rule, wildcards)
        held = sum(estimate.host.values()) + (0 if self.gpus else sum(estimate.device.values()))
        base = BASELINE_MB["torch" if estimate.torch else "numpy"]
        base += BASELINE_MB["cuda"] if estimate.torch and self.gpus and estimate.device else 0
        dataset = self.config.tsne.cifar10 if rule == "tsne_cifar10" else dict(wildcards.items()).get("dataset")
        if rule in DECODING_RULES and dataset is not None and self.config.datasets[dataset].kind in NATURAL_KINDS:
            base += threads * DECODER_MB
        return int(math.ceil((base + MARGIN * held / MB) / 100) * 100)

    def runtime_min(self, rule: str, wildcards) -> int:
        """Wall time of one job in minutes (first attempt)."""
        estimate = self.estimate(rule, wildcards)
        seconds = estimate.flops / THROUGHPUT[self.device if estimate.device else "cpu"]
        seconds += estimate.io_bytes / DISK_BPS
        return int(FLOOR_MIN + math.ceil(SLACK * seconds / 60))

    # --- what the rules declare ----------------------------------------------------------------------
    def mem_mb(self, rule: str) -> Callable:
        """``mem_mb`` of ``rule``: a function of (wildcards, threads, attempt), :meth:`memory_mb` x attempt.

        Raises
        ------
        KeyError
            If ``rule`` has no entry in :data:`ESTIMATES` (at once, when the rule is defined).
        """
        ESTIMATES[rule]
        return lambda wildcards, threads, attempt: self.memory_mb(rule, wildcards, threads) * attempt

    def runtime(self, rule: str) -> Callable:
        """``runtime`` of ``rule``: a function of (wildcards, attempt), :meth:`runtime_min` x attempt."""
        ESTIMATES[rule]
        return lambda wildcards, attempt: self.runtime_min(rule, wildcards) * attempt


class _Wildcards(dict):
    """A job's wildcards, read as attributes like Snakemake's."""

    __getattr__ = dict.__getitem__


# --- one estimate per rule ---------------------------------------------------------------------------------


def _plot(res: RuleResources, wc) -> Estimate:
    """A figure from result tables: matplotlib and small tables."""
    return Estimate(torch=False)


def _images_bytes(res: RuleResources, dataset: str) -> float:
    """uint8 pixels (and masks) of a synthetic dataset: N x S^2 x 4."""
    spec = res.config.datasets[dataset]
    size = getattr(spec, "image_size", 224)
    return res.images(dataset) * size * size * 4.0


def _synthesize(res: RuleResources, wc) -> Estimate:
    """Shapes and shift-split synthesis: each image and mask is written as it is rendered (one image and the
    object rows of 1024 images held, within the baseline), then the files are read back twice to hash them
    (each file's digest on publishing, clipmech.artefacts.write, and the dataset hash)."""
    written = _images_bytes(res, wc.dataset)
    return Estimate(io_bytes=3 * written, flops=written * 100, torch=False)


def _synthesize_pairs(res: RuleResources, wc) -> Estimate:
    """Minimal pairs: a fixed number of scenes, their images and masks held whole."""
    held = _images_bytes(res, wc.dataset)
    return Estimate(host={"images and masks": held}, io_bytes=held, flops=held * 100, torch=False)


def _index(res: RuleResources, wc) -> Estimate:
    """Indexing a natural dataset: decodes each image once (one at a time), the manifest's rows."""
    n = res.images(wc.dataset)
    return Estimate(host={"manifest": n * 1000.0}, io_bytes=n * 150e3, torch=False)


def _pixels(res: RuleResources, model: str, n: int) -> float:
    """float32 preprocessed pixels of n images at the model's input size."""
    size = res.shape(model).visual.image_size or 224
    return n * 3.0 * size * size * FLOAT32


def _stacked(res: RuleResources, model: str, n: int) -> float:
    """Pixels of n images preprocessed at once (clipmech.models.loading.preprocess_images): the list of
    per-image tensors and their stack."""
    return 2 * _pixels(res, model, n)


def _forward(res: RuleResources, model: str, batch: int, tower: str = "visual") -> dict:
    """A batch in a forward pass: its pixels and every block's residual and MLP activations (float32)."""
    t = getattr(res.shape(model), tower)
    if t.kind == "resnet":
        acts = batch * t.flops / max(t.params, 1) * 64 * FLOAT32  # feature maps: ~ output positions x channels
    else:
        acts = batch * t.n_layers * t.n_tokens * (3 * t.width + (t.d_mlp or 0) + t.n_heads * t.n_tokens) * FLOAT32
    return {f"{tower} activations of a batch": acts, "pixels of a batch": _pixels(res, model, batch)}


def _extract(res: RuleResources, wc) -> Estimate:
    """Activation extraction (clipmech.stores.activation_extraction): the model, one batch on the device and
    its chunk of the store on the host (float32 capture and float16 copy), streamed to zarr."""
    batch, n = res.config.extraction.batch_size, res.images(wc.dataset)
    parts = res.config.extraction.parts
    if "part" in wc:
        n = math.ceil(n / parts)
    chunk = res.store_per_image(wc.model, wc.dataset) * batch * 3
    return Estimate(
        host={**res.weights(wc.model), "a chunk of the store": chunk},
        device=_forward(res, wc.model, batch),
        flops=n * res.shape(wc.model).visual.flops,
        io_bytes=n * res.store_per_image(wc.model, wc.dataset),
    )


def _store_setup(res: RuleResources, wc) -> Estimate:
    """Creating or publishing a store in parts: metadata and checksums, one chunk at a time."""
    chunk = res.store_per_image(wc.model, wc.dataset) * res.config.extraction.batch_size
    return Estimate(host={"a chunk": 2 * chunk}, io_bytes=res.images(wc.dataset) * chunk, torch=False)


def _reductions(res: RuleResources, model: str, dataset: str) -> float:
    """float32 (N, L, D) of one reduction of the store."""
    visual = res.shape(model).visual
    layers = res.config.extraction.layers
    n_layers = visual.n_layers if layers is None else len(layers)
    return res.images(dataset) * n_layers * visual.width * FLOAT32


def _selectivity(res: RuleResources, wc) -> Estimate:
    """Algorithm 1: one reduction read (N, L, D) float32, the counts and the null."""
    sel = res.config.selectivity
    held = 2 * _reductions(res, wc.model, wc.dataset) + sel.n_null * sel.k * 64.0
    return Estimate(host={"reduction": held}, flops=sel.n_null * 1e5, torch=False)


def _embeddings(res: RuleResources, wc) -> Estimate:
    """Superposition, binding and t-SNE over the store's embedding (N, E) and units: float64 copies."""
    n = res.images(wc.dataset)
    units = res.config.superposition.n_units
    held = n * (res.shape(wc.model).embed_dim + units) * FLOAT64 * 4 + units * units * FLOAT64
    flops = res.config.superposition.n_resamples * n * units * 10.0
    return Estimate(host={"embeddings and units": held}, flops=flops, torch=False)


def _model_on_images(n_batches: Callable, grad: bool = False) -> Callable:
    """A stage that runs the model on images batch by batch and keeps small per-image results."""

    def estimate(res: RuleResources, wc) -> Estimate:
        batch, n = n_batches(res, wc)
        shape = res.shape(wc.model)
        factor = 3 if grad else 1
        device = {k: v * factor for k, v in _forward(res, wc.model, batch).items()}
        results = n * (shape.embed_dim + shape.visual.width) * FLOAT32
        return Estimate(
            host={**res.weights(wc.model), "per-image results": results},
            device=device,
            flops=factor * n * (shape.visual.flops + shape.text.flops),
        )

    return estimate


def _binding(res, wc):
    return res.config.extraction.batch_size, res.images(wc.dataset)


def _gradcam(res, wc):
    return 1, res.config.gradcam.n_images * 16


def _zeroshot(res, wc):
    return res.config.zeroshot.batch_size, res.images(wc.dataset)


def _tsne_cifar(res, wc):
    return res.config.extraction.batch_size, res.images(res.config.tsne.cifar10)


def _text(res: RuleResources, wc) -> Estimate:
    """Word embeddings of the decomposition's dictionary: n_words x E, batch by batch through the text tower."""
    text, shape = res.config.decomposition.text, res.shape(wc.model)
    held = text.n_words * shape.embed_dim * FLOAT32 * 2
    device = {
        "a batch of captions": text.batch_size
        * shape.text.n_layers
        * shape.text.n_tokens
        * 4.0
        * shape.text.width
        * FLOAT32
    }
    return Estimate(
        host={**res.weights(wc.model), "word embeddings": held}, device=device, flops=text.n_words * shape.text.flops
    )


def _attnpool_extract(res: RuleResources, wc) -> Estimate:
    """Attention-pool extraction: the model, a batch, one chunk of the pool store (float32) streamed to zarr."""
    batch, n = res.config.extraction.batch_size, res.images(wc.dataset)
    per_image = res.per_image(storage.attnpool_store, wc.model, wc.dataset) or 0.0  # without the pool's parameters
    return Estimate(
        host={**res.weights(wc.model), "a chunk of the store": 2.0 * batch * per_image},
        device=_forward(res, wc.model, batch),
        flops=n * res.shape(wc.model).visual.flops,
        io_bytes=n * per_image,
    )


def _pool(res: RuleResources, model: str) -> tuple[int, int, int, int]:
    """(T, C, H, E) of a CLIP-ResNet's attention pool."""
    shape = res.shape(model)
    return shape.visual.n_tokens, shape.visual.width, shape.visual.n_heads, shape.embed_dim


def _streamed(res: RuleResources, model: str, dataset: str) -> dict:
    """What every decomposition stage holds while it streams the store chunk by chunk (float64,
    clipmech.stores.attnpool.iter_scalars): a chunk of x, alpha and s and its copy, three temporaries of s's size
    and the head contributions (chunk, H, E) while clipmech.decomposition.components.ScoreSums adds it, the
    directions u (H, C, E) twice, the neuron Gram matrices (C, H, H), and per-image scalars. Nothing grows with
    the number of images beyond the scalars (tests/workflow/test_resources.py)."""
    t, c, h, e = _pool(res, model)
    n, chunk = res.images(dataset), res.config.decomposition.chunk_size
    return {
        "a chunk of x, alpha, s and its temporaries": chunk * (2 * (t * c + h * t) + 5 * h * c + h * e) * FLOAT64,
        "u (H, C, E) twice and the Gram matrices (C, H, H)": (2.0 * h * c * e + c * h * h) * FLOAT64,
        "per-image scalars": n * 8 * FLOAT64,
    }


def _decomposition(extra: Callable | None = None, passes: int = 2) -> Callable:
    """A decomposition stage that reads the store ``passes`` times (the first for the mean norms)."""

    def estimate(res: RuleResources, wc) -> Estimate:
        t, c, h, e = _pool(res, wc.model)
        n = res.images(wc.dataset)
        host = _streamed(res, wc.model, wc.dataset)
        if extra is not None:
            host |= extra(res, wc)
        flops = 10.0 * passes * n * h * c * (t + e)
        io = passes * (storage.attnpool_store(res.config, wc.model, wc.dataset, n).nbytes or 0)
        return Estimate(host=host, flops=flops, io_bytes=io, torch=True)

    return estimate


def _rank_one(res: RuleResources, wc) -> dict:
    """decompose_attnpool's second pass keeps, per checked pair and neuron, the scalars of its top images."""
    _, _, h, _ = _pool(res, wc.model)
    dec = res.config.decomposition
    return {"top images of the checked pairs and neurons": 2.0 * dec.n_checked * dec.pc_top_k * (h + 2) * FLOAT64}


def _ablation_tokens(res: RuleResources, wc) -> dict:
    """ablate_components recomputes the pool per fraction on an ablated copy of a chunk's tokens (its keys and
    values the same size), float64."""
    t, c, h, e = _pool(res, wc.model)
    return {"a chunk's ablated tokens, keys, values": 4.0 * res.config.decomposition.chunk_size * t * c * FLOAT64}


def _ablation(res: RuleResources, wc) -> Estimate:
    """ablate_components: the streamed decomposition, plus one (n, H*C) x (H*C, E) product per level and
    fraction kept (clipmech.decomposition.components.AblationCurves) and one attention-pool forward per
    fraction (the activation ablation), for every image at most (the evaluated ones)."""
    t, c, h, e = _pool(res, wc.model)
    n, n_fractions = res.images(wc.dataset), len(res.config.decomposition.ablation.fractions)
    estimate = _decomposition(_ablation_tokens)(res, wc)
    curves = 2.0 * n * h * c * e * len(_DECOMPOSITION_LEVELS) * n_fractions + 6.0 * n * t * c * c * n_fractions
    return replace(estimate, flops=estimate.flops + curves)


#: The levels of the mean-ablation curves (clipmech.decomposition.components.LEVELS).
_DECOMPOSITION_LEVELS = ("pair", "neuron", "head")


def _dictionary(res: RuleResources, wc) -> dict:
    """decompose_text: the word dictionary and its OMP codes, and the kept neurons' top images."""
    text, dec = res.config.decomposition.text, res.config.decomposition
    _, c, h, e = _pool(res, wc.model)
    kept = math.ceil(text.keep_fraction * c)
    return {
        "word dictionary and OMP codes": text.n_words * e * FLOAT64 * 4,
        "top images of the kept neurons": 2.0 * kept * dec.pc_top_k * (h + 2) * FLOAT64,
    }


def _registers(res: RuleResources, wc) -> Estimate:
    """find_registers: alpha (chunk, H, T) of a store chunk (a batch of the extraction) at a time, and x (n, T, C)
    and alpha (n, H, T) of the sample, float64."""
    t, c, h, e = _pool(res, wc.model)
    n = res.images(wc.dataset)
    sample = (
        n
        if res.config.decomposition.registers.n_images is None
        else min(n, res.config.decomposition.registers.n_images)
    )
    host = {
        "alpha of a store chunk float64": 2.0 * res.config.extraction.batch_size * h * t * FLOAT64,
        "x and alpha of the sample float64": 2.0 * sample * (t * c + h * t) * FLOAT64,
    }
    return Estimate(host=host, flops=4.0 * sample * t * c * c)


def _segment_shapes(res: RuleResources, wc) -> Estimate:
    """Training-free segmentation: the scalars, a chunk's per-pixel pair maps and the dataset's masks."""
    t, c, h, e = _pool(res, wc.model)
    top_k, chunk = res.config.decomposition.segmentation.top_k, res.config.decomposition.chunk_size
    host = _streamed(res, wc.model, wc.dataset)
    host["pair maps of a chunk"] = chunk * min(top_k, h * c) * t * FLOAT64 * 2
    host["images and masks"] = _images_bytes(res, wc.dataset)
    return Estimate(host=host, flops=20.0 * res.images(wc.dataset) * min(top_k, h * c) * t * e)


def _pascal(res: RuleResources, wc) -> Estimate:
    """PASCAL Context: the model on sliding crops of each image, a crop's pair maps at a time."""
    pc = res.config.decomposition.pascal_context
    t, c, h, e = _pool(res, wc.model)
    n = res.images(pc.dataset) if pc.dataset else 0
    crops = math.ceil(max(pc.scale) / pc.stride) ** 2
    tokens = (pc.crop_size // 32) ** 2 + 1
    host = {**res.weights(wc.model), "pair maps of a crop": min(pc.top_k, h * c) * tokens * FLOAT64 * 4}
    flops = (
        n
        * crops
        * res.shape(wc.model).visual.flops
        * (pc.crop_size / max(res.shape(wc.model).visual.image_size, 1)) ** 2
    )
    return Estimate(host=host, device=_forward(res, wc.model, 1), flops=flops)


def _monitor(res: RuleResources, wc) -> Estimate:
    """monitor_shift: one pass over the shift splits' store, holding what the decomposition stages hold."""
    return _decomposition(passes=1)(res, _Wildcards(model=wc.model, dataset=res.config.plan.shift_of[wc.dataset]))


def _patch(res: RuleResources, wc) -> Estimate:
    """Causal tracing (clipmech.patching.engine): the model, a batch of patched runs with the clean run's
    cached activations on the device, and the pairs' pixels; FLOPs from :func:`clipmech.costs.tower_sets`."""
    shape, patching = res.shape(wc.model), res.config.patching
    n_pairs = res.config.tracing_pairs(wc.dataset)
    # A pairs dataset's images are all preprocessed; a captions dataset's, only those of its pairs.
    n_images = res.images(wc.dataset) if res.config.datasets[wc.dataset].kind == "pairs" else n_pairs
    flops = 0.0
    for tower in (shape.visual, shape.text):
        full, pool, sweeps = costs.tower_sets(tower, patching)
        flops += len(res.config.tracing_corruptions(wc.dataset)) * n_pairs * (full + 2 * sweeps) * tower.flops
    device = {}
    for name in ("visual", "text"):
        device |= {
            f"{k} (clean and corrupted cache)": 3 * v
            for k, v in _forward(res, wc.model, patching.batch_size, name).items()
        }
    return Estimate(
        host={**res.weights(wc.model), "the pairs' pixels, twice": _stacked(res, wc.model, n_images)},
        device=device,
        flops=flops,
    )


def _units(res: RuleResources, model: str) -> float:
    """Units scored per input: every block's MLP neurons and heads of both towers."""
    shape = res.shape(model)
    return sum(t.n_layers * ((t.d_mlp or t.width) + t.n_heads + t.width) for t in (shape.visual, shape.text))


def _concepts(res: RuleResources, wc) -> Estimate:
    """Concept AUROC: a batch's activations of every unit of both towers, spilled to disk (float32) and read
    back a block of units at a time, the block's ranks (float64, three copies) and the tokenised captions."""
    n, batch = res.images(wc.dataset), res.config.patching.concepts.batch_size
    shape, units = res.shape(wc.model), _units(res, wc.model)
    host = {
        **res.weights(wc.model),
        "a block of unit activations and their ranks": 3.0 * AUROC_BLOCK_VALUES * FLOAT64,
        "a batch's unit activations, twice": 2.0 * batch * units * FLOAT32,
        "tokenised captions (N, 77) int64": n * 77 * 8.0,
    }
    flops = n * (shape.visual.flops + shape.text.flops)
    return Estimate(host=host, device=_forward(res, wc.model, batch), flops=flops, io_bytes=2.0 * n * units * FLOAT32)


def _interventions(res: RuleResources, wc) -> Estimate:
    """Concept interventions: every image preprocessed (float32), the model run once plus once per concept
    and scale on the images that hold the concept (at most all), a batch at a time."""
    n, concepts = res.images(wc.dataset), res.config.patching.concepts
    n_runs = 1 + 16 * len(concepts.scales)
    host = {**res.weights(wc.model), "pixels of every image, twice": _stacked(res, wc.model, n)}
    device = _forward(res, wc.model, concepts.batch_size)
    return Estimate(host=host, device=device, flops=n_runs * n * res.shape(wc.model).visual.flops)


def _sae_shape(res: RuleResources, model: str, site: str) -> tuple[int, int, int]:
    """(d, n latents, tokens per image) of the SAE of a model at a site."""
    d, positions = _site(res, model, site)
    sae = res.config.sae
    n_latents = sae.n_latents or int(sae.expansion * d)
    return d, n_latents, positions if sae.tokens == "all" else 1


def _train_sae(res: RuleResources, wc) -> Estimate:
    """Top-k SAE training: encoder and decoder with their gradients and Adam moments (float32), the token
    buffer and a batch's pre-activations."""
    sae = res.config.sae
    d, n_latents, _ = _sae_shape(res, wc.model, wc.site)
    weights = 2.0 * d * n_latents * FLOAT32 * 4
    host = {"token buffer": sae.buffer_tokens * d * FLOAT32 * 2}
    device = {"SAE, gradients, Adam": weights, "a batch's latents": 3.0 * sae.batch_size * n_latents * FLOAT32}
    return Estimate(host=host, device=device, flops=6.0 * sae.n_tokens * d * n_latents * 2)


def _evaluate_sae(res: RuleResources, wc) -> Estimate:
    """SAE evaluation: the model and the SAE, every store token's top-k codes and a chunk of tokens."""
    sae = res.config.sae
    d, n_latents, tokens = _sae_shape(res, wc.model, wc.site)
    n = res.images(wc.dataset)
    host = {
        **res.weights(wc.model),
        "SAE": 2.0 * d * n_latents * FLOAT32 * 2,
        "top-k codes of every token": n * tokens * sae.k * (FLOAT32 + 8) * 2,
        "tokens of the held-out images": sae.holdout * n * tokens * d * FLOAT32 * 2,
        "pixels of the single-object images (at most all), twice": _stacked(res, wc.model, n),
    }
    device = {"a batch's latents": res.config.atlas.batch_tokens * n_latents * FLOAT32 / 8}
    shape = res.shape(wc.model)
    return Estimate(host=host, device=device, flops=n * (shape.visual.flops + tokens * 4.0 * d * n_latents))


def _texts(count: Callable) -> Callable:
    """Texts through the model's text tower, 256 at a time, their embeddings kept (float32)."""

    def estimate(res: RuleResources, wc) -> Estimate:
        shape, n_texts = res.shape(wc.model), count(res, wc)
        host = {**res.weights(wc.model), "text embeddings": n_texts * shape.embed_dim * FLOAT32 * 2}
        return Estimate(host=host, device=_forward(res, wc.model, 256, "text"), flops=n_texts * shape.text.flops)

    return estimate


def _concept_texts(res: RuleResources, wc) -> int:
    """MiCLIP's words and its concepts' prompts: a natural dataset's concepts (:data:`PROMPTS` at most)."""
    natural = res.config.datasets[wc.dataset].kind in NATURAL_KINDS
    return res.config.miclip.n_words + (PROMPTS if natural else 16)


def _classifier_texts(res: RuleResources, wc) -> int:
    """A zero-shot classifier's prompts: classes x templates, :data:`PROMPTS` at most."""
    return PROMPTS


def _site(res: RuleResources, model: str, site: str) -> tuple[int, int]:
    """(width, positions per image) of a site: a transformer's tokens, a ResNet stage's feature map
    (clipmech.models.catalogue.site_positions; a tower known only once built: its tokens)."""
    tower, layer, hook = block_site(site)
    t, architecture = getattr(res.shape(model), tower), res.config.models[model].architecture
    width = catalogue.site_width(architecture, tower, layer, hook) or t.width
    return width, catalogue.site_positions(architecture, tower, layer, **res.config.models[model].sizes) or t.n_tokens


def _probe(res: RuleResources, wc) -> Estimate:
    """MiCLIP's probe (clipmech.stages.probe_miclip): the target, then the reference; a batch's pixels and site
    activations (float32), written to acts.zarr as they come; per image the image-level activations (N, D)
    and the reference embedding (N, E), float32."""
    n, miclip = res.images(wc.dataset), res.config.miclip
    batch, reference = miclip.batch_size_eval, miclip.reference
    width, positions = _site(res, wc.model, wc.site)
    embed = res.shape(reference).embed_dim
    host = {
        **res.weights(wc.model),
        **res.weights(reference),
        "a batch's pixels and site activations, twice": _stacked(res, wc.model, batch)
        + _stacked(res, reference, batch)
        + 2.0 * batch * positions * width * FLOAT32,
        "image activations (N, D) and reference embeddings (N, E), twice": 2.0 * n * (width + embed) * FLOAT32,
    }
    flops = n * (2 * res.shape(wc.model).visual.flops + res.shape(reference).visual.flops)
    io_bytes = n * positions * width * FLOAT32
    return Estimate(host=host, device=_forward(res, wc.model, batch), flops=flops, io_bytes=io_bytes)


def _train_miclip(res: RuleResources, wc) -> Estimate:
    """MiCLIP encoders (clipmech.stages.train_miclip): the probe's image-level activations (N, D), float32 and
    a float64 copy with its training and held-out parts, one (E, D) encoder with Adam per loss and seed."""
    n, miclip = res.images(wc.dataset), res.config.miclip
    width, _ = _site(res, wc.model, wc.site)
    embed = res.shape(miclip.reference).embed_dim
    n_encoders = len(miclip.seeds) * len(miclip.losses)
    host = {
        "image activations (N, D), float32 and float64, twice": n * width * (FLOAT32 + 2.0 * FLOAT64),
        "encoders with Adam": n_encoders * 4.0 * width * embed * FLOAT32,
    }
    flops = n_encoders * miclip.steps * miclip.batch_size * 6.0 * width * embed
    return Estimate(host=host, flops=flops)


def _evaluate_miclip(res: RuleResources, wc) -> Estimate:
    """MiCLIP evaluation: the model, the probe's image-level activations, the encoders, a chunk of held-out
    images' pixels (clipmech.miclip.evaluation.PIXEL_CHUNK) and a batch of the site's activations; on Shapes,
    Network Dissection's chunk of images (clipmech.miclip.baselines.netdissect_iou); for an SAE unit set the
    SAE, on Shapes the top-k codes of the held-out images, and of their (N, n) image-level latents, spilled to a
    temporary zarr array (clipmech.miclip.evaluation.sae_set), only the rows buffered before a write and a block
    of units read at a time: no term in N x n."""
    n = res.images(wc.dataset)
    probe, train = _probe(res, wc), _train_miclip(res, wc)
    width, positions = _site(res, wc.model, wc.site)
    host = {
        **res.weights(wc.model),
        **train.host,
        "pixels of a chunk of held-out images, twice": _stacked(res, wc.model, min(n, MICLIP_PIXEL_CHUNK)),
        "a batch's site activations read from acts.zarr": res.config.miclip.batch_size_eval
        * positions
        * width
        * FLOAT32,
    }
    if res.config.datasets[wc.dataset].kind not in NATURAL_KINDS:
        pixels = min(n, NETDISSECT_IMAGES) * res.config.miclip.netdissect.resolution**2
        host["Network Dissection: a chunk's upsampled maps and concept masks, the values it sorts"] = (
            3.0 * NETDISSECT_UNITS * pixels * FLOAT32
            + 5.0 * 16 * pixels
            + 2.0 * NETDISSECT_UNITS * NETDISSECT_CAP * FLOAT32
        )
    if wc.kind == "sae":
        d, n_latents, _ = _sae_shape(res, wc.model, wc.site)
        _, positions = _site(res, wc.model, wc.site)
        # The evaluation reads the held-out images (clipmech.miclip.units.split_images); the codes of each are
        # kept for Network Dissection's maps on Shapes only (clipmech.miclip.evaluation.sae_set).
        heldout = max(1, round(res.config.miclip.holdout * n))
        natural = res.config.datasets[wc.dataset].kind in NATURAL_KINDS
        codes = 0.0 if natural else heldout * positions * res.config.sae.k * 16
        # The spill's buffer and its concatenated copy (float32); a block of units: the float32 read, its float64
        # copy and negation, and their int64 sort order (clipmech.miclip.units.column_blocks).
        spilled = 2.0 * MICLIP_SPILL_IMAGES * n_latents * FLOAT32 + 4.0 * heldout * MICLIP_UNIT_CHUNK * FLOAT64
        host["SAE, top-k codes, image-level latents"] = 4.0 * d * n_latents * FLOAT32 + codes + spilled
    # CLIP-Dissect over the words (clipmech.miclip.baselines.soft_wpmi): its (U, A) log-probabilities and the
    # scores made of them, float64; the prior over units needs every unit's row.
    n_units = _sae_shape(res, wc.model, wc.site)[1] if wc.kind == "sae" else _site(res, wc.model, wc.site)[0]
    host["CLIP-Dissect's word scores (U, A), twice"] = 2.0 * n_units * res.config.miclip.n_words * FLOAT64
    return Estimate(host=host, device=probe.device, flops=4 * probe.flops)


def _train_clip(res: RuleResources, wc) -> Estimate:
    """Training a small CLIP: weights, gradients and Adam moments (float32) and a batch's activations kept for
    the backward pass (about 34 values per token, width and block, Korthikanti et al. 2022)."""
    train, shape = res.config.models[wc.model].train, res.shape(wc.model)
    device = {"weights, gradients, Adam": 4.0 * shape.params * FLOAT32}
    for t in (shape.visual, shape.text):
        device[f"{t.name} activations for backward"] = (
            train.batch_size * t.n_layers * t.n_tokens * 34 * t.width * FLOAT32
        )
    host = {"images of a batch": _pixels(res, wc.model, train.batch_size) * 4}
    return Estimate(
        host=host, device=device, flops=3.0 * train.steps * train.batch_size * (shape.visual.flops + shape.text.flops)
    )


def _atlas(res: RuleResources, wc) -> Estimate:
    """The atlas: the store's reductions, the dataset's thumbnails, the SAE latents of a batch of tokens."""
    dataset = res.config.plan.atlas_dataset
    host = {"reductions": 3 * _reductions(res, wc.model, dataset)}
    if res.config.datasets[dataset].kind not in NATURAL_KINDS:
        host["images and masks"] = _images_bytes(res, dataset)
    if wc.model in res.config.plan.sae_sites:
        for site in res.config.plan.sae_sites[wc.model]:
            d, n_latents, _ = _sae_shape(res, wc.model, site)
            host[f"SAE at {site} and a batch's latents"] = (
                (2.0 * d + res.config.atlas.batch_tokens) * n_latents * FLOAT32
            )
    return Estimate(host=host, io_bytes=res.images(dataset) * res.store_per_image(wc.model, dataset))


ESTIMATES: dict[str, Callable[[RuleResources, _Wildcards], Estimate]] = {
    "synthesize_shapes": _synthesize,
    "synthesize_shift": _synthesize,
    "synthesize_pairs": _synthesize_pairs,
    "index_images": _index,
    "train_clip": _train_clip,
    "extract_activations": _extract,
    "extract_activations_part": _extract,
    "begin_activations": _store_setup,
    "publish_activations": _store_setup,
    "neuron_selectivity": _selectivity,
    "superposition_separability": _embeddings,
    "tsne_shapes": _embeddings,
    "binding_benchmark": _model_on_images(_binding),
    "gradcam_binding": _model_on_images(_gradcam, grad=True),
    "tsne_cifar10": _model_on_images(_tsne_cifar),
    "zero_shot_classifier": _texts(_classifier_texts),
    "zero_shot": _model_on_images(_zeroshot),
    "extract_attnpool": _attnpool_extract,
    "embed_text": _text,
    "decompose_attnpool": _decomposition(_rank_one),
    "ablate_components": _ablation,
    "decompose_text": _decomposition(_dictionary, passes=3),
    "find_registers": _registers,
    "monitor_shift": _monitor,
    "segment_shapes": _segment_shapes,
    "segment_pascal_context": _pascal,
    "patch_components": _patch,
    "concept_auroc": _concepts,
    "intervene_concepts": _interventions,
    "train_sae": _train_sae,
    "evaluate_sae": _evaluate_sae,
    "embed_miclip_concepts": _texts(_concept_texts),
    "probe_miclip": _probe,
    "train_miclip": _train_miclip,
    "evaluate_miclip": _evaluate_miclip,
    "build_atlas": _atlas,
    "compare_paper": _plot,
}
ESTIMATES |= {
    rule: _plot
    for rule in (
        "plot_ablation",
        "plot_binding",
        "plot_concepts",
        "plot_dataset",
        "plot_decomposition",
        "plot_gradcam",
        "plot_interventions",
        "plot_miclip",
        "plot_miclip_training",
        "plot_patching",
        "plot_registers",
        "plot_sae_evaluation",
        "plot_sae_training",
        "plot_segmentation",
        "plot_selectivity",
        "plot_shift",
        "plot_sparse_accuracy",
        "plot_superposition",
        "plot_training",
        "plot_tsne_cifar10",
        "plot_tsne_shapes",
    )
}


# --- the plan ----------------------------------------------------------------------------------------------


def _natural_decompositions(plan) -> list[tuple[str, str]]:
    """The decomposed (model, dataset) pairs of natural-image datasets (scored over their classes)."""
    return [pair for pair in plan.decompositions if pair not in plan.shapes_decompositions]


def _wildcards(config: Config) -> dict[str, list[dict]]:
    """The wildcards of every job of every rule the run plans (as common.smk's ``all_targets`` asks for them)."""
    plan = config.plan
    kinds = {name: spec.kind for name, spec in config.datasets.items()}
    activations, attnpool = storage.planned_stores(config)
    md = lambda pairs: [{"model": m, "dataset": d} for m, d in pairs]  # noqa: E731
    used = {d for _, d in activations + attnpool + list(plan.patchings) + list(plan.zeroshots)}
    used |= {config.plan.atlas_dataset} | {d for _, d in plan.concepts}
    used |= {config.tsne.cifar10, config.decomposition.pascal_context.dataset, plan.sae_dataset} - {None}
    used |= {spec.base for spec in config.datasets.values() if spec.kind == "shift" and spec.base in used}
    used |= {name for name in plan.shift_of.values()}
    jobs: dict[str, list[dict]] = {
        "synthesize_shapes": [{"dataset": d} for d in sorted(used) if kinds[d] == "shapes"],
        "synthesize_shift": [{"dataset": d} for d in sorted(used) if kinds[d] == "shift"],
        "synthesize_pairs": [{"dataset": d} for d in sorted(used) if kinds[d] == "pairs"],
        "index_images": [{"dataset": d} for d in sorted(used) if kinds[d] in NATURAL_KINDS],
        "train_clip": [{"model": m} for m in plan.trained],
        "plot_training": [{"model": m} for m in plan.trained],
        "extract_attnpool": md(attnpool),
        "neuron_selectivity": md(plan.analyses),
        "plot_selectivity": md(plan.analyses),
        "patch_components": md(plan.patchings),
        "plot_patching": md(plan.patchings),
        "concept_auroc": md(plan.concepts),
        "intervene_concepts": md(plan.concept_interventions),
        "plot_interventions": md(plan.concept_interventions),
        "plot_concepts": md(plan.concept_interventions),
        # The decomposition of a natural dataset scores over its classes with the same classifier.
        "zero_shot_classifier": md(dict.fromkeys([*plan.zeroshots, *_natural_decompositions(plan)])),
        "zero_shot": md(plan.zeroshots),
        "build_atlas": [{"model": m} for m in plan.atlas_models],
        "embed_text": [{"model": m} for m in config.decomposition.models],
    }
    jobs["plot_dataset"] = [{"dataset": d} for d in sorted({d for _, d in plan.shapes_analyses})]
    if config.extraction.parts == 1:
        jobs["extract_activations"] = md(activations)
    else:
        jobs["begin_activations"] = jobs["publish_activations"] = md(activations)
        parts = range(config.extraction.parts)
        jobs["extract_activations_part"] = [
            {"model": m, "dataset": d, "part": str(p)} for m, d in activations for p in parts
        ]
    for rule in ("superposition_separability", "plot_superposition", "binding_benchmark", "plot_binding"):
        jobs[rule] = md(plan.shapes_analyses)
    for rule in ("gradcam_binding", "plot_gradcam", "tsne_shapes", "plot_tsne_shapes"):
        jobs[rule] = md(plan.shapes_analyses)
    decomposed = (
        "decompose_attnpool plot_decomposition ablate_components plot_ablation decompose_text plot_sparse_accuracy "
        "find_registers plot_registers"
    )
    for rule in decomposed.split():
        jobs[rule] = md(plan.decompositions)
    jobs["segment_shapes"] = jobs["plot_segmentation"] = md(plan.shapes_decompositions)
    jobs["monitor_shift"] = jobs["plot_shift"] = md((m, d) for m, d in plan.shapes_decompositions if d in plan.shift_of)
    if config.decomposition.pascal_context.dataset is not None:
        jobs["segment_pascal_context"] = [{"model": m} for m in config.decomposition.models]
    if config.tsne.cifar10 is not None:
        jobs["tsne_cifar10"] = jobs["plot_tsne_cifar10"] = [{"model": m} for m in config.analyses.models]
    saes = [{"model": m, "dataset": plan.sae_dataset, "site": s} for m, s in plan.saes]
    for rule in ("train_sae", "plot_sae_training", "evaluate_sae", "plot_sae_evaluation"):
        jobs[rule] = saes
    if plan.miclip_units:
        dataset = config.miclip.dataset
        jobs["embed_miclip_concepts"] = [{"model": config.miclip.reference, "dataset": dataset}]
        sites = [{"model": m, "dataset": dataset, "site": s} for m, s in plan.miclip_sites]
        jobs["probe_miclip"] = jobs["train_miclip"] = jobs["plot_miclip_training"] = sites
        units = [{"model": m, "dataset": dataset, "site": s, "kind": k} for m, s, k in plan.miclip_units]
        jobs["evaluate_miclip"] = jobs["plot_miclip"] = units
    jobs["compare_paper"] = [{"paper": paper} for paper in PAPERS]
    return {rule: wildcards for rule, wildcards in jobs.items() if wildcards}


@dataclass(frozen=True)
class Job:
    """One planned job: its rule, wildcards, first-attempt ``mem_mb`` and ``runtime`` (minutes) and the largest
    thing it holds (name, bytes)."""

    rule: str
    wildcards: dict
    mem_mb: int
    runtime: int
    largest: tuple[str, float]


def plan_jobs(config: Config, workdir: str = ".", threads: int = 2) -> list[Job]:
    """Every job the run plans (:func:`_wildcards`) with its resources, by rule in :data:`ESTIMATES`' order."""
    resources = RuleResources(config, workdir)
    planned = _wildcards(config)
    jobs = []
    for rule in ESTIMATES:
        for wildcards in planned.get(rule, []):
            estimate = resources.estimate(rule, wildcards)
            held = {**estimate.host, **({} if resources.gpus else estimate.device)}
            largest = max(held.items(), key=lambda item: item[1]) if held else ("", 0.0)
            jobs.append(
                Job(
                    rule,
                    wildcards,
                    resources.memory_mb(rule, wildcards, threads),
                    resources.runtime_min(rule, wildcards),
                    largest,
                )
            )
    return jobs


def format_jobs(jobs: list[Job], gpus: int) -> str:
    """One line per rule: its jobs, the largest ``mem_mb`` and ``runtime`` of them, the job they belong to and
    what it holds most of; then the largest job of the run."""
    where = "on the GPU: device memory not counted" if gpus else "on the CPU: every array counted"
    lines = [
        f"{'rule (resources; ' + where + ')':<64} {'jobs':>5} {'mem_mb':>8} {'runtime':>8}  largest job: holds most"
    ]
    for rule in dict.fromkeys(job.rule for job in jobs):
        of_rule = [job for job in jobs if job.rule == rule]
        top = max(of_rule, key=lambda job: job.mem_mb)
        longest = max(job.runtime for job in of_rule)
        name = "/".join(top.wildcards.values())
        holds = f"{top.largest[0]}: {storage.human(top.largest[1])}" if top.largest[0] else "-"
        lines.append(f"{rule:<64} {len(of_rule):>5} {top.mem_mb:>8} {longest:>7}m  {name}: {holds}")
    if jobs:
        top = max(jobs, key=lambda job: job.mem_mb)
        longest = max(jobs, key=lambda job: job.runtime)
        lines.append(
            f"largest memory: {top.rule} {'/'.join(top.wildcards.values())} ({top.mem_mb / 1000:.3g} GB); "
            f"longest: {longest.rule} {'/'.join(longest.wildcards.values())} ({longest.runtime} min); {len(jobs)} jobs"
        )
    lines.append(
        f"(runtime is the scheduler's bound, not an estimate: {FLOOR_MIN} min + {SLACK} x the work at "
        f"{THROUGHPUT['cuda'] / 1e12:g} TFLOP/s on a GPU, {THROUGHPUT['cpu'] / 1e9:g} GFLOP/s on a CPU thread)"
    )
    return "\n".join(lines)
