"""Extraction of an activation store: run a CLIP model over a dataset with its hook sites captured.

The store's layout, the sites it can hold and its resume protocol are described in
:mod:`clipmech.stores.activations`; this module writes it (:func:`extract`), resumably through
:mod:`clipmech.stores.base`. Readers open a store with :func:`clipmech.stores.activations.open_store`
and do not depend on this module, the models or the hooks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import open_clip
import torch
import xarray as xr
from tqdm import tqdm

from clipmech.data import datasets, loader, shapes
from clipmech.hooks.sites import canonical_name, hooked, resolve
from clipmech.models import loading
from clipmech.models.precision import autocast
from clipmech.models.towers import tower
from clipmech.stores import base
from clipmech.stores.activations import site_variable

log = logging.getLogger(__name__)

REDUCTIONS = ("mean", "max", "cls")


def reduce_tokens(acts_NLTD: torch.Tensor, reduction: str, n_prefix_tokens: int) -> torch.Tensor:
    """Reduce per-token activations to one value per image and unit (methods.md Sec. 2).

    Parameters
    ----------
    acts_NLTD : torch.Tensor, (N, L, T, D)
    reduction : {"mean", "max", "cls"}
        ``mean`` / ``max`` over the patch tokens, or the class token's activation.
    n_prefix_tokens : int
        Tokens before the patch tokens.

    Returns
    -------
    torch.Tensor, float32, (N, L, D)

    Raises
    ------
    ValueError
        For an unknown reduction, or ``cls`` on a tower without a class token.
    """
    patches = acts_NLTD[:, :, n_prefix_tokens:].float()
    if reduction == "mean":
        return patches.mean(dim=2)
    if reduction == "max":
        return patches.amax(dim=2)
    if reduction == "cls":
        if n_prefix_tokens < 1:
            raise ValueError("reduction 'cls' needs a class token; this tower has none (use 'mean' or 'max')")
        return acts_NLTD[:, :, 0].float()
    raise ValueError(f"unknown reduction {reduction!r}; valid reductions are: {', '.join(REDUCTIONS)}")


@dataclass(frozen=True)
class StoreProvenance(base.ProvenanceAttrs):
    """What an activation store holds; written into its attributes and checked on resume.

    Attributes
    ----------
    model, architecture : str
        Config name and open_clip architecture.
    weights : str
        open_clip pretrained tag, ``sha256:<hex>`` of a local checkpoint, or ``random-init``.
    preprocess : str
        ``repr`` of the eval transform applied to every image.
    dataset : str
        Path of the dataset directory as given.
    dataset_sha256 : str
        sha256 of the dataset's data files (from its ``spec.json``).
    layers : tuple of int
        Vision blocks of the MLP outputs (the ``layer`` coordinate).
    reductions : tuple of str
    save_tokens : bool
    batch_size : int
        Images per zarr chunk.
    clipmech_version, open_clip_version, torch_version : str
    sites : tuple of str
        Canonical names of every stored site, the MLP outputs first (:class:`SitePlan`).
    code : str
        Hash of the package code of the extracting rule (its ``code`` param, :mod:`clipmech.codehash`), so
        that a resume after a code edit starts afresh instead of mixing two versions in one store.
    precision : {"fp32", "bf16", "fp16"}
        The compute precision of the forwards (``extraction.precision``, :mod:`clipmech.models.precision`):
        a store made at bf16 is never resumed at fp32, nor taken for one (it is in the store's attributes).
    """

    model: str
    architecture: str
    weights: str
    preprocess: str
    dataset: str
    dataset_sha256: str
    layers: tuple[int, ...]
    reductions: tuple[str, ...]
    save_tokens: bool
    batch_size: int
    clipmech_version: str
    open_clip_version: str
    torch_version: str
    sites: tuple[str, ...]
    code: str
    precision: str


DEFAULT_SITES = ("visual.blocks.*.hook_mlp_out",)


#: The pattern of the MLP outputs, the store's ``mean`` / ``max`` / ``cls`` / ``tokens``.
MLP_PATTERN = "visual.blocks.*.hook_mlp_out"


#: Hooks of a transformer block whose (N, T, width) tensor a store can hold.
STORE_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")


@dataclass(frozen=True)
class SitePlan:
    """Which sites a store holds and under which variables.

    Attributes
    ----------
    layers : tuple of int
        Vision blocks of the MLP outputs (the ``layer`` coordinate).
    mlp_sites : tuple of str
        ``visual.blocks.<l>.hook_mlp_out`` for l in ``layers``.
    extras : dict of str to tuple of str
        Variable name -> its sites, in increasing layer order (module docstring).
    """

    layers: tuple[int, ...]
    mlp_sites: tuple[str, ...]
    extras: dict

    @property
    def sites(self) -> tuple[str, ...]:
        """Every stored site, the MLP outputs first, then the extras by variable."""
        return self.mlp_sites + tuple(site for names in self.extras.values() for site in names)

    @property
    def needs_text(self) -> bool:
        """Whether a text-tower site is stored (the images' captions go through the text tower)."""
        return any(site.startswith("text.") for site in self.sites)


def plan_sites(model, sites, layers: list[int] | None) -> SitePlan:
    """Expand and check the ``sites`` of an extraction (module docstring).

    Parameters
    ----------
    model : open_clip.CLIP
    sites : sequence of str
        Site names or patterns with ``*`` as the layer; must include :data:`MLP_PATTERN`.
    layers : list of int, optional
        The layers ``*`` stands for in the vision tower (default all); the text tower's ``*`` is all blocks.

    Returns
    -------
    SitePlan

    Raises
    ------
    ValueError
        If :data:`MLP_PATTERN` is missing, a name is not a site of the model (the message lists the
        valid names), or a site is not a transformer block's (N, T, width) tensor (the message
        lists :data:`STORE_HOOKS`).
    TypeError
        If ``sites`` is a single string.
    """
    if isinstance(sites, str):
        raise TypeError(f"sites takes a list of site names, got the string {sites!r}; use [{sites!r}]")
    if MLP_PATTERN not in sites:
        raise ValueError(
            f"extraction sites {list(sites)} lack {MLP_PATTERN!r}: the MLP outputs of methods.md Sec. 2 are "
            "the store's mean / max / cls / tokens, which every rule reading a store needs"
        )
    visual = tower(model, "visual")
    layers = list(range(visual.n_layers)) if layers is None else [int(layer) for layer in layers]
    names = []
    for entry in sites:
        if not isinstance(entry, str):
            raise TypeError(f"a site must be a str, got {type(entry).__name__} {entry!r}")
        prefix, star, hook = entry.partition(".blocks.*.")
        if not star:
            names.append(canonical_name(model, entry))
        elif prefix == "visual":
            names += [canonical_name(model, f"visual.blocks.{layer}.{hook}") for layer in layers]
        elif prefix == "text":
            n_text = tower(model, "text").n_layers
            names += [canonical_name(model, f"text.blocks.{layer}.{hook}") for layer in range(n_text)]
        else:
            raise ValueError(f"site pattern {entry!r}: unknown tower {prefix!r}; towers are visual, text")
    mlp_sites = [f"visual.blocks.{layer}.hook_mlp_out" for layer in layers]
    groups: dict[str, list] = {}
    for name in dict.fromkeys(names):
        site = resolve(model, name)
        if site.layer is None or site.hook not in STORE_HOOKS or tower(model, site.tower).kind == "resnet":
            raise ValueError(
                f"site {name!r} cannot go into an activation store: it holds (N, T, width) sites of transformer "
                f"blocks, <tower>.blocks.<l>.<hook> with hook in {', '.join(STORE_HOOKS)}"
            )
        if name not in mlp_sites:
            groups.setdefault(site_variable(site.tower, site.hook), []).append((site.layer, name))
    extras = {var: tuple(name for _, name in sorted(group)) for var, group in groups.items()}
    return SitePlan(layers=tuple(layers), mlp_sites=tuple(mlp_sites), extras=extras)


def image_captions(dataset: datasets.ImageDataset) -> list[str]:
    """The caption of every image, for text-tower sites (module docstring).

    Returns
    -------
    list of str
        A Shapes dataset: :func:`clipmech.data.shapes.caption` of each image's objects in ``object_id``
        order; a ``captions`` dataset: each image's first caption.

    Raises
    ------
    ValueError
        If the dataset has neither an object table nor captions (an ImageNet or image-folder dataset).
    """
    if dataset.manifest is not None and dataset.manifest["captions"].map(len).gt(0).all():
        return [str(captions[0]) for captions in dataset.manifest["captions"]]
    if dataset.objects is None:
        raise ValueError(
            f"text-tower sites need a caption per image, from a Shapes dataset's object table or a captions "
            f"dataset; dataset kind {dataset.spec['kind']!r} has none"
        )
    objects = dataset.objects.sort_values(["image_id", "object_id"])
    by_image = {image_id: group.to_dict("records") for image_id, group in objects.groupby("image_id")}
    return [shapes.caption(by_image[i]) for i in range(dataset.n_images)]


def store_template(
    n_images: int,
    layers,
    n_tokens: int,
    width: int,
    embed_dim: int,
    batch: int,
    prov,
    extra_attrs,
    extras: dict | None = None,
) -> xr.Dataset:
    """A lazy (dask) Dataset of the store's full shape and chunking; ``to_zarr(compute=False)``
    writes its metadata and coordinates only, ready for region writes of each batch.

    ``extras`` maps a further site variable to (layers, tokens, units), its layer coordinate and
    the T and width of its sites (module docstring)."""
    n_layers = len(layers)
    data_vars = {
        reduction: (
            ("image", "layer", "neuron"),
            dask.array.zeros((n_images, n_layers, width), chunks=(batch, 1, width), dtype="float32"),
        )
        for reduction in prov.reductions
    }
    if prov.save_tokens:
        data_vars["tokens"] = (
            ("image", "layer", "token", "neuron"),
            dask.array.zeros(
                (n_images, n_layers, n_tokens, width), chunks=(batch, 1, n_tokens, width), dtype="float16"
            ),
        )
    data_vars["embedding"] = (
        ("image", "embed"),
        dask.array.zeros((n_images, embed_dim), chunks=(batch, embed_dim), dtype="float32"),
    )
    coords = {
        "image": np.arange(n_images),
        "layer": np.asarray(layers),
        "token": np.arange(n_tokens),
        "neuron": np.arange(width),
        "embed": np.arange(embed_dim),
    }
    for var, (var_layers, var_tokens, var_units) in (extras or {}).items():
        shape = (n_images, len(var_layers), var_tokens, var_units)
        data_vars[var] = (
            ("image", f"{var}_layer", f"{var}_token", f"{var}_unit"),
            dask.array.zeros(shape, chunks=(batch, 1, var_tokens, var_units), dtype="float16"),
        )
        coords[f"{var}_layer"] = np.asarray(var_layers)
        coords[f"{var}_token"] = np.arange(var_tokens)
        coords[f"{var}_unit"] = np.arange(var_units)
    return xr.Dataset(data_vars, coords=coords, attrs={**prov.to_attrs(), **extra_attrs})


def activations_batch(
    model,
    cache,
    plan: SitePlan,
    pixels_NCHW: torch.Tensor,
    text_NL: torch.Tensor | None,
    reductions,
    save_tokens: bool,
    n_prefix_tokens: int,
) -> xr.Dataset:
    """Forward one batch with the plan's sites hooked and package what the store holds for it.

    Parameters
    ----------
    model
        An open_clip model run inside ``hooked(model, capture=plan.sites)``, which yields ``cache``.
    cache : clipmech.hooks.sites.ActivationCache
    plan : SitePlan
    pixels_NCHW : torch.Tensor
        Preprocessed images on the model's device.
    text_NL : torch.Tensor, int64, (N, context length), optional
        The images' tokenised captions, when ``plan.needs_text``.

    Returns
    -------
    xarray.Dataset
        The batch's reductions (image, layer, neuron) float32, ``tokens`` (image, layer, token,
        neuron) float16 when ``save_tokens``, ``embedding`` (image, embed) float32 normalised, and
        each extra site variable (image, layer, token, unit) float16; no coordinates, ready for a
        region write.
    """
    cache.reset()
    embedding_NE = model.encode_image(pixels_NCHW, normalize=True).float()
    if plan.needs_text:
        model.encode_text(text_NL)
    acts_NLTD = torch.stack([cache[site] for site in plan.mlp_sites], dim=1)  # [batch, layer, token, d_model]
    batch = {
        reduction: (("image", "layer", "neuron"), reduce_tokens(acts_NLTD, reduction, n_prefix_tokens).cpu().numpy())
        for reduction in reductions
    }
    if save_tokens:
        batch["tokens"] = (("image", "layer", "token", "neuron"), acts_NLTD.to(torch.float16).cpu().numpy())
    batch["embedding"] = (("image", "embed"), embedding_NE.cpu().numpy())
    for var, sites in plan.extras.items():
        acts_NLTU = torch.stack([cache[site] for site in sites], dim=1).to(torch.float16)
        batch[var] = (("image", f"{var}_layer", f"{var}_token", f"{var}_unit"), acts_NLTU.cpu().numpy())
    return xr.Dataset(batch)


def extract(
    spec: loading.ModelSpec,
    dataset_dir: str | Path,
    store: str | Path,
    layers: list[int] | None = None,
    sites: tuple[str, ...] = DEFAULT_SITES,
    reductions: tuple[str, ...] = ("mean", "max", "cls"),
    save_tokens: bool = True,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    *,
    code: str,
    workers: int = 0,
) -> Path:
    """Run a model over a dataset with the sites hooked and write the activation store.

    Parameters
    ----------
    spec : ModelSpec
    dataset_dir : path
        A dataset directory (:mod:`clipmech.data.datasets`): synthetic, or a natural-image manifest whose
        files are decoded by ``workers`` processes.
    store : path
        The final store (a directory); written via ``<store>.partial``.
    layers : list of int, optional
        Vision blocks of the MLP outputs, and of ``*`` in vision-site patterns (default: all).
    sites : sequence of str
        Sites to store (module docstring); default the MLP outputs only.
    reductions : tuple of {"mean", "max", "cls"}
    save_tokens : bool
        Also store every token's activation (float16).
    batch_size : int
        Images per forward pass and per zarr chunk.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
    precision : {"fp32", "bf16", "fp16"}
        The forwards' compute precision (:func:`clipmech.models.precision.autocast`); the stored dtypes do
        not change.
    code : str
        Hash of the extracting rule's package code (``StoreProvenance.code``).
    workers : int
        Processes decoding a natural-image dataset's files (:func:`clipmech.data.loader.pixel_batches`).

    Returns
    -------
    pathlib.Path
        The published store.

    Raises
    ------
    StoreLockedError
        If another process is writing the store (:mod:`clipmech.stores.locks`); raised before the model
        is loaded, and nothing is read, written or deleted.
    FileExistsError
        If ``store`` already exists (a complete store is never overwritten).
    ValueError
        For an unknown reduction, a site that is unknown or cannot be stored (:func:`plan_sites`),
        text-tower sites on a dataset without captions (:func:`image_captions`), fp16 on a device that is
        not CUDA (:func:`clipmech.models.precision.autocast`), or a batch with a NaN or infinite value
        (:func:`clipmech.stores.base.check_finite`; the store stays unpublished).
    TypeError
        If the vision tower is a ModifiedResNet (its store is the attention-pool store).
    FileNotFoundError
        If text-tower sites are asked for and the model's Hugging Face tokenizer files are not available
        (:func:`clipmech.models.loading.load_tokenizer`); vision sites need no tokenizer.
    """
    store = Path(store)
    # A second writer of the store fails here, before it loads anything or touches a file.
    with base.writing(store):
        if store.exists():
            raise FileExistsError(f"activation store {store} already exists; delete it to extract again")
        with _opened(
            spec, dataset_dir, layers, sites, reductions, save_tokens, batch_size, device, precision, code
        ) as run:
            start = base.begin_store(store, run.prov, run.template)
            run.write(store, start, run.dataset.n_images, workers)
        base.publish_store(store, "activation store")
    log.info("published %s (%d images, sites %s)", store, run.dataset.n_images, ", ".join(run.plan.sites))
    return store


@dataclass
class _Run:
    """A model loaded for the extraction of one store, inside ``hooked(model, capture=plan.sites)``."""

    spec: loading.ModelSpec
    dataset: datasets.ImageDataset
    model: object
    preprocess: object
    cache: object
    plan: SitePlan
    prov: StoreProvenance
    device: torch.device
    captions: list[str] | None
    tokenizer: object

    @property
    def info(self):
        return tower(self.model, "visual")

    def text_tokens(self, first: int, last: int) -> torch.Tensor | None:
        return self.tokenizer(self.captions[first:last]).to(self.device) if self.plan.needs_text else None

    def template(self) -> xr.Dataset:
        """The store's lazy template (:func:`store_template`); extra sites' (T, width) from one image."""
        extras = {}
        if self.plan.extras:
            _, _, pixels = next(loader.pixel_batches(self.dataset, self.preprocess, batch_size=1))
            activations_batch(
                self.model, self.cache, self.plan, pixels.to(self.device), self.text_tokens(0, 1), (), False, 1
            )
            extras = {
                var: ([resolve(self.model, site).layer for site in names], *self.cache[names[0]].shape[1:])
                for var, names in self.plan.extras.items()
            }
        info = self.info
        layout = {"n_prefix_tokens": info.n_prefix_tokens, "grid_rows": info.grid[0], "grid_cols": info.grid[1]}
        # From the model config: a timm trunk (SigLIP's TimmModel) has no `output_dim` as open_clip's own towers do.
        embed_dim = int(open_clip.get_model_config(self.spec.architecture)["embed_dim"])
        prov = self.prov
        return store_template(
            self.dataset.n_images,
            prov.layers,
            info.n_tokens,
            info.width,
            embed_dim,
            prov.batch_size,
            prov,
            layout,
            extras,
        )

    def write(self, store: Path, start: int, stop: int, workers: int, part: base.Part | None = None) -> None:
        """Forward images ``start`` to ``stop - 1`` in batches and write each (:func:`clipmech.stores.base.write_batch`)."""
        prov, plan = self.prov, self.plan
        batch_sites = {
            **dict.fromkeys((*prov.reductions, "tokens"), plan.mlp_sites),
            "embedding": "the image embedding",
            **plan.extras,
        }
        batches = loader.pixel_batches(
            self.dataset,
            self.preprocess,
            batch_size=prov.batch_size,
            start=start,
            stop=stop,
            workers=workers,
            device=self.device,
        )
        n_prefix_tokens = self.info.n_prefix_tokens
        label = f"extract {self.spec.name}" + ("" if part is None else f" part {part.index}")
        for first, last, pixels in tqdm(
            batches, desc=label, total=-(-(stop - start) // prov.batch_size), mininterval=10
        ):
            batch = activations_batch(
                self.model,
                self.cache,
                plan,
                pixels.to(self.device, non_blocking=True),
                self.text_tokens(first, last),
                prov.reductions,
                prov.save_tokens,
                n_prefix_tokens,
            )
            base.write_batch(store, batch, first, last, self.spec.name, batch_sites, part)


@contextlib.contextmanager
def _opened(
    spec, dataset_dir, layers, sites, reductions, save_tokens, batch_size, device, precision, code, *, shapes=False
) -> Iterator[_Run]:
    """Load the dataset and the model, plan the sites and the provenance, and hook the sites, the forwards
    under the precision's autocast (:func:`extract`). With ``shapes`` (a template: one image's forward, for
    the shapes of the extra sites) the forward runs in float32 on any device, an fp16 store's on the CPU too."""
    unknown = sorted(set(reductions) - set(REDUCTIONS))
    if unknown:
        raise ValueError(f"unknown reductions {unknown}; valid reductions are: {', '.join(REDUCTIONS)}")
    torch_device = loading.resolve_device(device)
    # Refused before the model loads (fp16 on a CPU).
    compute = contextlib.nullcontext() if shapes else autocast(torch_device, precision)
    dataset = datasets.load(dataset_dir)
    model, preprocess = loading.load_model(spec, torch_device)
    if tower(model, "visual").kind == "resnet":
        raise TypeError(
            f"activation stores hold transformer MLP outputs; {spec.name} has a ModifiedResNet vision tower "
            "(use the attention-pool store, clipmech.stores.attnpool)"
        )
    plan = plan_sites(model, sites, layers)
    captions = image_captions(dataset) if plan.needs_text else None
    # Only text-tower sites need the tokenizer (SigLIP's: Hugging Face files, loading.load_tokenizer).
    tokenizer = loading.load_tokenizer(spec) if plan.needs_text else None
    prov = StoreProvenance(
        **loading.run_provenance(spec, preprocess, dataset_dir, dataset.spec["sha256"], batch_size),
        layers=plan.layers,
        reductions=tuple(reductions),
        save_tokens=bool(save_tokens),
        sites=plan.sites,
        code=code,
        precision=precision,
    )
    with hooked(model, capture=plan.sites) as cache, torch.inference_mode(), compute:
        yield _Run(spec, dataset, model, preprocess, cache, plan, prov, torch_device, captions, tokenizer)


def begin_parts(
    spec: loading.ModelSpec,
    dataset_dir: str | Path,
    store: str | Path,
    layers: list[int] | None = None,
    sites: tuple[str, ...] = DEFAULT_SITES,
    reductions: tuple[str, ...] = ("mean", "max", "cls"),
    save_tokens: bool = True,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    *,
    code: str,
) -> Path:
    """Write the template of a store that parts extract (:func:`extract_part`), or keep a partial store of
    the same provenance so that its parts resume (:func:`clipmech.stores.base.begin_parts`).

    Parameters are those of :func:`extract`; the model is loaded to know the store's shapes (and the
    extra sites' from one image, in float32 whatever ``precision``, which only the provenance records).

    Returns
    -------
    pathlib.Path
        The partial store, ``<store>.partial``.

    Raises
    ------
    StoreLockedError
        If another process writes the store or a part of it; raised before the model is loaded.
    FileExistsError
        If ``store`` already exists.
    ValueError, TypeError, FileNotFoundError
        As :func:`extract`.
    """
    store = Path(store)
    with base.writing(store):
        if store.exists():
            raise FileExistsError(f"activation store {store} already exists; delete it to extract again")
        settings = (spec, dataset_dir, layers, sites, reductions, save_tokens, batch_size, device, precision, code)
        with _opened(*settings, shapes=True) as run:
            base.begin_parts(store, run.prov, run.template)
    return base.partial_path(store)


def extract_part(
    spec: loading.ModelSpec,
    dataset_dir: str | Path,
    store: str | Path,
    part: int,
    parts: int,
    layers: list[int] | None = None,
    sites: tuple[str, ...] = DEFAULT_SITES,
    reductions: tuple[str, ...] = ("mean", "max", "cls"),
    save_tokens: bool = True,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    *,
    code: str,
    workers: int = 0,
) -> base.Part:
    """Extract part ``part`` of ``parts`` of a store into its partial store (:func:`begin_parts` first):
    the images of whole chunks :func:`clipmech.stores.base.part_range` gives it, resumably.

    Parameters are those of :func:`extract`, which must equal the template's: the part's provenance
    is checked against the partial store's before anything is written.

    Returns
    -------
    clipmech.stores.base.Part
        The part's range, every image of it written and recorded in ``<store>.part-<k>.progress.json``.

    Raises
    ------
    StoreLockedError
        If another process writes this part; raised before the model is loaded.
    FileNotFoundError
        If the partial store does not exist (no template yet).
    clipmech.stores.base.StoreProvenanceError
        If the partial store was begun with other provenance (model, weights, sites, code...); nothing is written.
    ValueError, TypeError
        As :func:`extract`, and for a part outside ``0 .. parts - 1``.
    """
    store = Path(store)
    # Known before the model loads: the part's lock, taken here, stops a second writer of this part at once.
    base.part_range(0, batch_size, part, parts)
    with base.writing(base.Part(part, parts, 0, 0).name(store)):
        with _opened(
            spec, dataset_dir, layers, sites, reductions, save_tokens, batch_size, device, precision, code
        ) as run:
            span = base.part_range(run.dataset.n_images, batch_size, part, parts)
            start = base.begin_part(store, run.prov, span)
            run.write(store, start, span.end, workers, span)
    log.info("wrote part %d of %d of %s (images %d to %d)", part, parts, store, span.first, span.end - 1)
    return span


def publish_parts(store: str | Path, parts: int) -> Path:
    """Publish a store written by ``parts`` parts (:func:`extract_part`): every part recorded its whole
    range and every chunk exists (:func:`clipmech.stores.base.publish_parts`); the chunk size is the
    ``batch_size`` of the partial store's provenance.

    Returns
    -------
    pathlib.Path
        The published store, the same byte for byte as :func:`extract` writes.

    Raises
    ------
    StoreLockedError, clipmech.stores.base.StoreIntegrityError
        As :func:`clipmech.stores.base.publish_parts`.
    """
    store = Path(store)
    batch_size = int(xr.open_zarr(base.partial_path(store), consolidated=False).attrs["batch_size"])
    base.publish_parts(store, "activation store", parts, batch_size)
    log.info("published %s from %d parts", store, parts)
    return store
