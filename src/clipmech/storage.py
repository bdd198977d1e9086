"""The storage plan: what every store a config asks for will take on disk, known before any job runs.

:func:`storage_plan` sizes each activation store (methods.md Sec. 2) and attention-pool store
(methods.md Sec. 5) of a :class:`clipmech.config.Config` from the config alone: images x layers x
tokens x width x bytes per value of each array, with the widths, depths and tokens per image read from
open_clip's model configs (:mod:`clipmech.models.catalogue`, no model is built). The estimate is
the arrays' raw bytes; the stores are written with zstd, which gains little on transformer activations (8 %
on the float16 tokens of the tiny test model), and their metadata is a few kB per array, so the files of an
activation store come within 10 % of it. An attention-pool store's ``x`` is a ReLU output, about half
zeros, which zstd compresses: its estimate is an upper bound (the tiny run's: 13 % and 31 % over;
tests/workflow/test_workflow.py checks both).

The site activations a MiCLIP probe writes on a Shapes dataset (:func:`miclip_probe_store`, float32) are
counted too: within 10 % at a transformer site, an upper bound at a ResNet stage (post-ReLU: the tiny run's
files are a third of it).

``python -m clipmech plan`` prints the plan (:func:`format_plan`); the Snakefile refuses to build the DAG
when the total exceeds ``storage.budget_gb`` (:func:`check_budget`).

The number of images of a dataset (:func:`dataset_images`): a synthetic dataset's from its config; a
natural-image dataset's ``n_images`` when set, else the size of an ImageNet split, else the rows of its
manifest when it is indexed, else the images its listing finds under the root (what rule
``index_images`` would list, without reading them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clipmech.config import ACTIVATIONS, ATTNPOOL, DATA, MICLIP_PROBE_ACTS, NATURAL_KINDS, Config
from clipmech.hooks.names import block_site
from clipmech.models import catalogue

#: Bytes per value of the stores' arrays (clipmech.stores.activation_extraction, attnpool_extraction).
FLOAT32, FLOAT16 = 4, 2
GB = 1e9

#: What shrinks the stores, named when a plan is over budget.
SHRINK_KEYS = (
    "extraction.sites (each site pattern adds images x layers x tokens x width values)",
    "extraction.layers (the vision blocks a '*' pattern stands for)",
    "extraction.save_tokens: false (keep the per-image reductions only: the tokens are most of a store)",
    "extraction.reductions",
    "the datasets' n_images (a seeded subset)",
    "miclip.units (each unit set on a Shapes miclip.dataset stores its site's activations, float32)",
)


@dataclass(frozen=True)
class StoreEstimate:
    """The estimated size of one store.

    Attributes
    ----------
    path : str
        The store, as the workflow names it.
    kind : {"activations", "attnpool", "miclip"}
    model, dataset : str
    n_images : int or None
        None when the dataset's size is not known (see :func:`dataset_images`).
    arrays : dict of str to int
        Bytes of each array; empty when the model's configuration is not known before it loads (a
        Hugging Face hub or timm architecture).
    note : str
        Why the estimate is missing, "" when there is one.
    """

    path: str
    kind: str
    model: str
    dataset: str
    n_images: int | None
    arrays: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def nbytes(self) -> int | None:
        """Bytes of every array; None when unknown."""
        return sum(self.arrays.values()) if self.arrays else None


def dataset_images(config: Config, name: str, workdir: str | Path = ".") -> int | None:
    """The number of images of dataset ``name`` (module docstring); None if a natural dataset's root
    cannot be listed (it is then refused when the dataset is indexed).

    Raises
    ------
    KeyError
        If no dataset has this name.
    """
    dataset = config.datasets[name]
    if dataset.kind not in NATURAL_KINDS:
        return dataset.n_images
    if dataset.n_images is not None:
        return dataset.n_images
    from clipmech.data import natural

    if dataset.kind == "imagenet":
        return natural.IMAGENET_SPLIT_SIZES[dataset.split]
    manifest = Path(workdir) / DATA.format(dataset=name) / "manifest.parquet"
    if manifest.is_file():
        import pyarrow.parquet as pq

        return pq.ParquetFile(manifest).metadata.num_rows
    try:
        return len(natural.list_dataset(dataset.params()).samples)
    except (OSError, ValueError):
        return None


def _expand(config: Config, model: str, architecture: str, n_vision: int) -> tuple[list[int], list[str]]:
    """The vision layers of the MLP outputs and every other stored site (as plan_sites expands them)."""
    extraction = config.extraction
    layers = list(range(n_vision)) if extraction.layers is None else [int(layer) for layer in extraction.layers]
    mlp = {f"visual.blocks.{layer}.hook_mlp_out" for layer in layers}
    others = []
    for entry in extraction.sites_of(model):
        prefix, star, hook = entry.partition(".blocks.*.")
        if not star:
            tower, layer, hook = block_site(entry)
            n = n_vision if tower == "visual" else catalogue.tower_layers(architecture, tower) or 0
            others.append(f"{tower}.blocks.{layer % n if n else layer}.{hook}")
        elif prefix == "visual":
            others += [f"visual.blocks.{layer}.{hook}" for layer in layers]
        else:
            n_text = catalogue.tower_layers(architecture, prefix) or 0
            others += [f"{prefix}.blocks.{layer}.{hook}" for layer in range(n_text)]
    return layers, [site for site in dict.fromkeys(others) if site not in mlp]


def activation_store(config: Config, model: str, dataset: str, n_images: int | None) -> StoreEstimate:
    """The arrays of the activation store of ``model`` on ``dataset`` (clipmech.stores.activations):
    the reductions (N, L, D) float32, the tokens (N, L, T, D) float16 when ``save_tokens``, the
    embedding (N, E) float32 and every further site (N, T_site, width_site) float16."""
    path = ACTIVATIONS.format(model=model, dataset=dataset)
    architecture, sizes = config.models[model].architecture, config.models[model].sizes
    n_vision = catalogue.tower_layers(architecture, "visual")
    tokens = catalogue.tokens_per_input(architecture, "visual", **sizes)
    width = catalogue.site_width(architecture, "visual", 0, "hook_mlp_out")
    open_clip_config = catalogue.model_config(architecture, **sizes)
    if None in (n_vision, tokens, width, open_clip_config) or n_images is None:
        why = (
            "the number of images is unknown"
            if n_images is None
            else f"{architecture}'s configuration is known only when it loads"
        )
        return StoreEstimate(path, "activations", model, dataset, n_images, note=why)
    layers, others = _expand(config, model, architecture, n_vision)
    n_tokens = sum(tokens)
    arrays = {reduction: n_images * len(layers) * width * FLOAT32 for reduction in config.extraction.reductions}
    if config.extraction.save_tokens:
        arrays["tokens"] = n_images * len(layers) * n_tokens * width * FLOAT16
    arrays["embedding"] = n_images * int(open_clip_config["embed_dim"]) * FLOAT32
    for site in others:
        tower, layer, hook = block_site(site)
        site_tokens = catalogue.tokens_per_input(architecture, tower, **sizes)
        site_width = catalogue.site_width(architecture, tower, layer, hook)
        if site_tokens is None or site_width is None:
            return StoreEstimate(path, "activations", model, dataset, n_images, note=f"the width of {site} is unknown")
        arrays[site] = n_images * sum(site_tokens) * site_width * FLOAT16
    return StoreEstimate(path, "activations", model, dataset, n_images, arrays)


def attnpool_store(config: Config, model: str, dataset: str, n_images: int | None) -> StoreEstimate:
    """The arrays of the attention-pool store of a CLIP-ResNet (clipmech.stores.attnpool): x (N, T, C),
    alpha (N, H, T), y (N, E) float32 and the pool's parameters float32, with C = 32 x the ResNet's
    width, H = C / head_width, T = (image_size / 32)^2 + 1 (open_clip's ModifiedResNet)."""
    path = ATTNPOOL.format(model=model, dataset=dataset)
    open_clip_config = catalogue.model_config(config.models[model].architecture, **config.models[model].sizes)
    if open_clip_config is None or n_images is None:
        why = "the number of images is unknown" if n_images is None else "the architecture is known only when it loads"
        return StoreEstimate(path, "attnpool", model, dataset, n_images, note=why)
    vision = {"width": 64, "head_width": 64, "image_size": 224, **open_clip_config["vision_cfg"]}
    size = vision["image_size"]
    size = size if isinstance(size, int) else size[0]
    channels, embed = 32 * int(vision["width"]), int(open_clip_config["embed_dim"])
    heads, n_tokens = channels // int(vision["head_width"]), (size // 32) ** 2 + 1
    arrays = {
        "x": n_images * n_tokens * channels * FLOAT32,
        "alpha": n_images * heads * n_tokens * FLOAT32,
        "y": n_images * embed * FLOAT32,
        "parameters": (n_tokens * channels + 3 * (channels * channels + channels) + embed * channels + embed) * FLOAT32,
    }
    return StoreEstimate(path, "attnpool", model, dataset, n_images, arrays)


def miclip_probe_store(config: Config, model: str, site: str, n_images: int | None) -> StoreEstimate:
    """The site activations a MiCLIP probe writes on a Shapes ``miclip.dataset`` (clipmech.miclip.probe_store):
    ``site_acts`` float32, (N, T, D) at a transformer site, (N, C, h, w) at a ResNet stage."""
    dataset = config.miclip.dataset
    path = MICLIP_PROBE_ACTS.format(model=model, dataset=dataset, site=site)
    architecture = config.models[model].architecture
    tower, layer, hook = block_site(site)
    width = catalogue.site_width(architecture, tower, layer, hook)
    positions = catalogue.site_positions(architecture, tower, layer, **config.models[model].sizes)
    if None in (width, positions, n_images):
        why = "the number of images is unknown" if n_images is None else "the architecture is known only when it loads"
        return StoreEstimate(path, "miclip", model, dataset, n_images, note=why)
    return StoreEstimate(
        path, "miclip", model, dataset, n_images, {"site_acts": n_images * positions * width * FLOAT32}
    )


def planned_stores(config: Config) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(model, dataset) of every activation store and every attention-pool store the run writes: the analysed
    pairs, each SAE model's store on the SAE dataset and each analysed atlas model's on the atlas dataset;
    the decomposed pairs, their shift splits and a decomposed atlas model's synthetic atlas dataset."""
    plan = config.plan
    activations = list(plan.analyses)
    activations += [(model, plan.sae_dataset) for model in plan.sae_sites if plan.sae_sites[model]]
    activations += [(model, plan.atlas_dataset) for model in plan.atlas_models if model in config.analyses.models]
    attnpool = list(plan.decompositions)
    attnpool += [(model, plan.shift_of[dataset]) for model, dataset in plan.decompositions if dataset in plan.shift_of]
    if config.datasets[plan.atlas_dataset].kind not in NATURAL_KINDS:
        attnpool += [(model, plan.atlas_dataset) for model in plan.atlas_models if model in config.decomposition.models]
    return list(dict.fromkeys(activations)), list(dict.fromkeys(attnpool))


def storage_plan(config: Config, workdir: str | Path = ".") -> list[StoreEstimate]:
    """Every store of the run (:func:`planned_stores`, and the MiCLIP probes' site activations on a Shapes
    ``miclip.dataset``) with its estimated size, largest first (unknown last)."""
    activations, attnpool = planned_stores(config)
    names = {dataset for _, dataset in activations + attnpool}
    images = {name: dataset_images(config, name, workdir) for name in sorted(names)}
    stores = [activation_store(config, m, d, images[d]) for m, d in activations]
    stores += [attnpool_store(config, m, d, images[d]) for m, d in attnpool]
    if config.plan.miclip_sites and config.miclip_natural_params() is None:
        n_images = dataset_images(config, config.miclip.dataset, workdir)
        stores += [miclip_probe_store(config, model, site, n_images) for model, site in config.plan.miclip_sites]
    return sorted(stores, key=lambda store: -1 if store.nbytes is None else store.nbytes, reverse=True)


def total_bytes(stores: list[StoreEstimate]) -> int:
    """Bytes of the stores with an estimate."""
    return sum(store.nbytes or 0 for store in stores)


def human(nbytes: float) -> str:
    """A byte count in kB, MB, GB or TB (powers of 1000), three significant digits."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes / 1e3:.3g} kB"


def format_plan(stores: list[StoreEstimate], budget_gb: float | None = None) -> str:
    """The plan as a table: one line per store (path, images, size, the largest array) and the total."""
    width = max([56, *(len(store.path) for store in stores)])
    lines = [f"{'store':<{width}} {'images':>9} {'size':>9}  largest array"]
    for store in stores:
        if store.nbytes is None:
            lines.append(f"{store.path:<{width}} {store.n_images or '?':>9} {'?':>9}  ({store.note})")
            continue
        name, size = max(store.arrays.items(), key=lambda item: item[1])
        lines.append(f"{store.path:<{width}} {store.n_images:>9} {human(store.nbytes):>9}  {name}: {human(size)}")
    unknown = sum(store.nbytes is None for store in stores)
    total = f"total: {human(total_bytes(stores))} in {len(stores)} stores"
    if unknown:
        total += f" ({unknown} not estimated)"
    if budget_gb is not None:
        total += f"; storage.budget_gb = {budget_gb:g}"
    return "\n".join([*lines, total])


def check_budget(stores: list[StoreEstimate], budget_gb: float | None) -> None:
    """Refuse a run whose stores exceed ``budget_gb`` (None: no limit).

    Raises
    ------
    ValueError
        If the total exceeds the budget; the message names the three largest stores and the keys that shrink them.
    """
    if budget_gb is None or total_bytes(stores) <= budget_gb * GB:
        return
    largest = ", ".join(f"{s.path} ({human(s.nbytes)})" for s in stores[:3] if s.nbytes is not None)
    raise ValueError(
        f"the stores of this config take about {human(total_bytes(stores))}, over "
        f"storage.budget_gb = {budget_gb:g}; the largest: {largest}. Shrink them with "
        + "; ".join(SHRINK_KEYS)
        + ", or raise storage.budget_gb (python -m clipmech plan prints every store)"
    )
