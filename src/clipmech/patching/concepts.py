"""Concept selectivity of the units of both towers, as AUROC (methods.md Sec. 8.5; causal-tracing paper Sec. 3.4).

Concepts are a dataset's (:func:`clipmech.data.concepts.concept_matrix`, methods.md Sec. 1.1): the 16 Shapes
features (:data:`clipmech.data.shapes.FEATURES`: 5 shapes, 6 colours, 5 positions) of a Shapes or
minimal-pairs dataset, the classes of an ImageNet or image-folder dataset, the COCO categories or the
configured words of a captions dataset. Their type (:func:`concept_types`) is the Shapes attribute
(``shape``, ``colour``, ``position``), or ``class``, ``category`` or ``word``.

Units are, per tower, the MLP hidden neurons ``{tower}.blocks.{l}.mlp.hook_post`` of every block
(vision kinds ``vit`` and ``timm``, and the text tower); for a CLIP-ResNet (kind ``resnet``) the channels
of every stage output ``visual.blocks.{l}.hook_resid_post`` and the attention-pool input channels
``visual.attnpool.hook_x`` (the pool counts as layer 4, after the four stages; its input channels are the
last stage's output channels, :func:`channel_site`, each with its own AUROC here). A unit's activation on
an image is its image-level activation as methods.md Sec. 9.3 defines it for every analysis that reads a
neuron: the mean over the patch tokens, the prefix (class) tokens excluded (ResNet stages: over the
feature map's positions; the attention-pool input: over its spatial tokens, the mean token excluded).
On a text it is the maximum over the text's real tokens (:func:`real_token_mask`): a text has no patch
tokens, and a concept is named by one or two of its tokens.

The texts (:func:`text_inputs`): a Shapes image's caption (:func:`image_captions`), whose concepts are its
image's; the first caption of a captions dataset's image, whose concepts are its words (a word list) or its
image's COCO categories; for a dataset of classes, the prompt :data:`CLASS_PROMPT` of each labelled image's
class, whose concept is that class.

AUROC of unit u for concept f: :func:`clipmech.analyses.concepts.auroc`. A unit is selective for a
concept when its AUROC >= 0.9; a concept is modality-invariant when both towers have a selective unit
for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from clipmech.analyses.concepts import caption_presence
from clipmech.data import shapes
from clipmech.data.concepts import CAPTION_KIND, CLASS_KINDS, SHAPES_KINDS, Concepts, as_list, words_in_texts
from clipmech.hooks.sites import hooked, resolve
from clipmech.models.towers import text_pool, tower
from clipmech.stores.base import spill_array

#: Pooling types of open_clip's text towers whose pooled token ends the caption (``text_global_pool``).
END_POOLS = ("argmax", "eos")
#: Pooling types that pool a fixed position; the real tokens are those that are not padding.
PAD_POOLS = ("last",)
#: The attention-pool input site of a CLIP-ResNet; its channels are the last stage's output channels.
POOL_INPUT = "visual.attnpool.hook_x"
#: Columns of the AUROC table, one row per unit x concept.
AUROC_COLUMNS = ("tower", "site", "layer", "unit", "concept", "concept_type", "auroc", "n_pos", "n_neg")
#: Units per chunk of a spilled activation array by default (:func:`streamed_image_unit_activations` with ``spill``).
SPILL_UNIT_CHUNK = 128
#: The text of a class for the text tower on a dataset of classes (the prompt MiCLIP embeds, methods.md Sec. 9.8).
CLASS_PROMPT = "a photo of a {}."
#: The concept type of each natural-image concept source (:attr:`clipmech.data.concepts.Concepts.source`).
SOURCE_TYPES = {
    "ImageNet classes": "class",
    "folder classes": "class",
    "COCO categories": "category",
    "caption words": "word",
}


@dataclass(frozen=True, eq=False)
class TextInputs:
    """The texts the text tower reads for the concept AUROC of a dataset (:func:`text_inputs`).

    Attributes
    ----------
    texts : tuple of str
        One per row; repeated where images share a text (a class's prompt).
    images : numpy.ndarray, int64, (N_t,)
        The image of each text; images without a text (unlabelled, uncaptioned) have no row.
    present_NF : numpy.ndarray, bool, (N_t, F)
        The concepts each text holds, columns as the dataset's concepts.
    description : str
        What the texts are, for the log.
    """

    texts: tuple[str, ...]
    images: np.ndarray
    present_NF: np.ndarray
    description: str


def concept_types(concepts: Concepts) -> tuple[str, ...]:
    """The type of each concept: the Shapes attribute of a feature, else ``class``, ``category`` or ``word``.

    Raises
    ------
    ValueError
        For a concept source this module does not know (the message lists the known ones).
    """
    if concepts.source == "Shapes features":
        return tuple(shapes.FEATURE_TYPES)
    if concepts.source not in SOURCE_TYPES:
        known = ", ".join(["Shapes features", *SOURCE_TYPES])
        raise ValueError(f"no concept type for concepts of source {concepts.source!r}; known sources: {known}")
    return (SOURCE_TYPES[concepts.source],) * concepts.n_concepts


def text_inputs(data, concepts: Concepts) -> TextInputs:
    """The texts of a dataset's images for the text tower, and the concepts each holds (module docstring).

    Parameters
    ----------
    data : clipmech.data.datasets.ImageDataset
        Shapes kinds need ``objects``; ``imagenet`` and ``imagefolder`` the manifest's ``label``; ``captions``
        its ``captions``.
    concepts : Concepts
        The dataset's concepts (:func:`clipmech.data.concepts.concept_matrix` of ``data``).

    Raises
    ------
    ValueError
        If a Shapes caption names other concepts than its image's objects (the message names the first such
        image), or the dataset's kind has no texts here (the message lists the kinds).
    """
    kind = data.spec["kind"]
    if kind in SHAPES_KINDS:
        captions = image_captions(data.objects, data.n_images)
        present_NF = caption_presence(captions)
        differs = np.flatnonzero((present_NF != concepts.present_NF).any(axis=1))
        if differs.size:
            raise ValueError(
                f"image {differs[0]}: its caption {captions[differs[0]]!r} names other concepts than its objects "
                f"({differs.size} images differ)"
            )
        images = np.arange(data.n_images, dtype=np.int64)
        return TextInputs(tuple(captions), images, present_NF, "each image's caption of its objects")
    if kind in CLASS_KINDS:
        labels = data.manifest["label"].to_numpy(dtype=np.int64)
        images = np.flatnonzero(labels >= 0).astype(np.int64)
        texts = tuple(CLASS_PROMPT.format(concepts.names[label]) for label in labels[images])
        description = f"the prompt {CLASS_PROMPT!r} of each labelled image's class"
        return TextInputs(texts, images, concepts.present_NF[images], description)
    if kind == CAPTION_KIND:
        firsts = [as_list(cell)[:1] for cell in data.manifest["captions"]]
        images = np.asarray([i for i, first in enumerate(firsts) if first], dtype=np.int64)
        texts = tuple(str(firsts[i][0]) for i in images)
        if concepts.source == "caption words":
            return TextInputs(texts, images, words_in_texts(texts, concepts.names), "each image's first caption")
        description = "each image's first caption, holding its image's COCO categories"
        return TextInputs(texts, images, concepts.present_NF[images], description)
    valid = ", ".join((*SHAPES_KINDS, *CLASS_KINDS, CAPTION_KIND))
    raise ValueError(f"no texts for the concept AUROC of dataset kind {kind!r}; the kinds with texts are: {valid}")


def image_captions(objects: pd.DataFrame, n_images: int) -> list[str]:
    """The caption of every image, :func:`clipmech.data.shapes.caption` of its objects in table order (no rng)."""
    ordered = objects.sort_values(["image_id", "object_id"])
    scenes: dict[int, list[dict]] = {i: [] for i in range(n_images)}
    for row in ordered[["image_id", "shape", "colour", "position"]].itertuples(index=False):
        scenes[int(row.image_id)].append({"shape": row.shape, "colour": row.colour, "position": row.position})
    return [shapes.caption(scenes[i]) for i in range(n_images)]


def unit_sites(model: torch.nn.Module, tower_name: str) -> list[str]:
    """The sites whose channels are the units of a tower, in depth order.

    Returns
    -------
    list of str
        ``{tower}.blocks.{l}.mlp.hook_post`` for every block of a transformer tower; for a ``resnet``
        vision tower ``visual.blocks.{l}.hook_resid_post`` for the four stages, then ``visual.attnpool.hook_x``.

    Raises
    ------
    ValueError, TypeError
        As :func:`clipmech.models.towers.tower`.
    """
    info = tower(model, tower_name)
    if info.kind == "resnet":
        return [f"visual.blocks.{layer}.hook_resid_post" for layer in range(info.n_layers)] + [POOL_INPUT]
    return [f"{info.name}.blocks.{layer}.mlp.hook_post" for layer in range(info.n_layers)]


def site_layer(model: torch.nn.Module, site: str) -> int:
    """The layer of a unit site: its block (stage) index; the ResNet attention pool counts as layer 4."""
    resolved = resolve(model, site)
    return tower(model, resolved.tower).n_layers if resolved.layer is None else resolved.layer


def channel_site(site: str, layer: int) -> str:
    """The site whose channels a unit site's units are, so that one channel is one unit.

    The attention-pool input ``visual.attnpool.hook_x`` (layer L, :func:`site_layer`) is the output of the
    last stage ``visual.blocks.{L-1}.hook_resid_post``, flattened, with the mean token and the positional
    embedding added: its channel c is that stage's channel c. Every other unit site's channels are its own.
    """
    return f"visual.blocks.{layer - 1}.hook_resid_post" if site == POOL_INPUT else site


def text_pooling(model: torch.nn.Module, tokenizer) -> tuple[str, int | None, int | None]:
    """How a model's text tower pools: ``(pool_type, pad_id, eos_id)`` as open_clip's ``text_global_pool`` uses them.

    ``pad_id`` is read from the tokenizer (a Hugging Face tokenizer's ``pad_token_id``; open_clip's own
    tokenizer pads with 0); the rest from :func:`clipmech.models.towers.text_pool`.
    """
    pool_type, eos_id = text_pool(model)
    hf = getattr(tokenizer, "tokenizer", None)
    pad_id = getattr(hf, "pad_token_id", None) if hf is not None else 0
    return pool_type, pad_id, eos_id


def real_token_mask(
    tokens_NT: torch.Tensor, pool_type: str, pad_id: int | None = None, eos_id: int | None = None
) -> torch.Tensor:
    """The real (non-padding) tokens of tokenized captions, as a text tower's pooling sees them.

    ``argmax`` pooling (CLIP): positions 0 .. argmax of the token ids (the end-of-text token)
    inclusive; ``eos``: 0 .. the first ``eos_id`` inclusive; ``last`` (SigLIP, which pools the final
    position): the tokens that are not ``pad_id``.

    Parameters
    ----------
    tokens_NT : torch.Tensor, int64, (N, T)
    pool_type : {"argmax", "eos", "last"}
    pad_id, eos_id : int, optional
        Needed for ``last`` and ``eos`` pooling respectively.

    Returns
    -------
    torch.Tensor, bool, (N, T)

    Raises
    ------
    ValueError
        For another pool type, or a missing ``pad_id`` / ``eos_id`` that the pool type needs.
    """
    positions_T = torch.arange(tokens_NT.shape[1], device=tokens_NT.device)
    if pool_type == "argmax":
        return positions_T[None, :] <= tokens_NT.argmax(dim=-1)[:, None]
    if pool_type == "eos":
        if eos_id is None:
            raise ValueError("real_token_mask: 'eos' pooling needs the tower's eos_id, got None")
        return positions_T[None, :] <= (tokens_NT == eos_id).int().argmax(dim=-1)[:, None]
    if pool_type == "last":
        if pad_id is None:
            raise ValueError("real_token_mask: 'last' pooling needs the tokenizer's pad_id, got None")
        return tokens_NT != pad_id
    raise ValueError(f"unsupported text pool type {pool_type!r}; supported: {', '.join(END_POOLS + PAD_POOLS)}")


def _image_reduce(n_prefix_tokens: int):
    """(N, U) image-level activation of a vision unit site: its mean over the patch tokens (module docstring)."""

    def reduce(act: torch.Tensor) -> torch.Tensor:
        if act.ndim == 4:
            return act.float().mean(dim=(2, 3))
        return act[:, n_prefix_tokens:].float().mean(dim=1)

    return reduce


def _caption_reduce(real_NT: torch.Tensor):
    """(N, U) caption-level activation of a text unit site: its maximum over the real tokens of each caption."""

    def reduce(act: torch.Tensor, start: int) -> torch.Tensor:
        real = real_NT[start : start + act.shape[0], : act.shape[1]].to(act.device)
        return act.masked_fill(~real[:, :, None], float("-inf")).amax(dim=1)

    return reduce


def _collect(
    model,
    sites: Sequence[str],
    batches: Iterable,
    forward,
    reduce,
    spill: str | Path | None = None,
    spill_units: int = SPILL_UNIT_CHUNK,
) -> dict[str, np.ndarray]:
    """For every batch, ``forward(batch)``, then keep ``reduce(activation, start)`` of every site (``start``: the
    batch's first input), one batch of captured activations in memory at a time; in memory, or appended to
    one zarr array per site under the directory ``spill`` (:func:`streamed_image_unit_activations`)."""
    parts: dict[str, list[np.ndarray]] = {site: [] for site in sites}
    arrays: dict[str, zarr.Array] = {}
    start = 0
    with torch.inference_mode(), hooked(model, capture=list(sites)) as cache:
        for batch in batches:
            cache.reset()
            forward(batch)
            for i, site in enumerate(sites):
                acts_BU = reduce(cache[site], start).float().cpu().numpy()
                if spill is None:
                    parts[site].append(acts_BU)
                    continue
                if site not in arrays:
                    arrays[site] = spill_array(Path(spill) / str(i), acts_BU.shape, spill_units)
                arrays[site].append(acts_BU, axis=0)
            start += batch.shape[0]
    if start == 0:
        raise ValueError("no inputs: the unit activations need at least one image or text")
    if spill is not None:
        return arrays
    return {site: np.concatenate(chunks) for site, chunks in parts.items()}


def _batches(values, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return (values[start : start + batch_size] for start in range(0, values.shape[0], batch_size))


def image_unit_activations(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    sites: Sequence[str],
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Every vision unit's image-level activation on preprocessed images held in memory, ``batch_size`` at a time
    (:func:`streamed_image_unit_activations`).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S)
        Preprocessed images (:func:`clipmech.models.loading.preprocess_images`).
    sites : sequence of str
        Vision unit sites (:func:`unit_sites`).
    batch_size : int
    device : str or torch.device
        Where the model is.

    Returns
    -------
    dict of str to numpy.ndarray, float32, (N, U_site)

    Raises
    ------
    ValueError
        For an unknown site (:func:`clipmech.hooks.sites.hooked`), a batch size below 1 or no images.
    """
    return streamed_image_unit_activations(model, _batches(pixels_NCHW, batch_size), sites, device=device)


def streamed_image_unit_activations(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    sites: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    spill: str | Path | None = None,
    spill_units: int = SPILL_UNIT_CHUNK,
) -> dict[str, np.ndarray]:
    """Every vision unit's image-level activation: its mean over the patch tokens (ResNet stages: over the
    feature map's positions; the attention-pool input: over its spatial tokens), module docstring.

    Memory holds one batch of pixels and the full activations of all ``sites`` for it (batch x sum over sites of
    T x U floats), and the result, N x U float32, unless ``spill`` names a directory: each site's result is then
    appended batch by batch to a zarr array there (chunks of one batch x ``spill_units`` units), and
    memory does not grow with N. The images may come from a loader that decodes them as they are needed
    (:func:`clipmech.data.loader.pixel_batches`).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    batches : iterable of torch.Tensor, float, (B, 3, S, S)
        Preprocessed images, in order.
    sites : sequence of str
        Vision unit sites (:func:`unit_sites`).
    device : str or torch.device
        Where the model is.
    spill : str or pathlib.Path, optional
        A directory (created if absent) for the results on disk, one zarr array per site.
    spill_units : int
        Units per chunk of those arrays (:func:`clipmech.analyses.concepts.block_units` of the inputs, for
        :func:`clipmech.analyses.concepts.blocked_auroc` to read whole chunks).

    Returns
    -------
    dict of str to numpy.ndarray or zarr.Array, float32, (N, U_site)
        N the images of all batches, in order; zarr arrays under ``spill`` when it is given.

    Raises
    ------
    ValueError
        For an unknown site (:func:`clipmech.hooks.sites.hooked`) or no images.
    """
    by_image = _image_reduce(tower(model, "visual").n_prefix_tokens)

    def forward(pixels: torch.Tensor) -> None:
        model.encode_image(pixels.to(device))

    return _collect(model, sites, batches, forward, lambda act, _: by_image(act), spill, spill_units)


def caption_unit_activations(
    model: torch.nn.Module,
    tokenizer,
    captions: Sequence[str],
    sites: Sequence[str],
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
    spill: str | Path | None = None,
    spill_units: int = SPILL_UNIT_CHUNK,
) -> dict[str, np.ndarray]:
    """Every text unit's activation per caption: its maximum over the caption's real tokens
    (:func:`real_token_mask` for the model's pooling, :func:`text_pooling`); held in memory, or on disk under
    ``spill`` as :func:`streamed_image_unit_activations` holds them.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    tokenizer : callable
        The model's tokenizer (list of str -> int64 (N, T)).
    captions : sequence of str
    sites : sequence of str
        Text unit sites (:func:`unit_sites`).
    batch_size : int
    device : str or torch.device
    spill : str or pathlib.Path, optional
    spill_units : int
        As :func:`streamed_image_unit_activations`.

    Returns
    -------
    dict of str to numpy.ndarray or zarr.Array, float32, (N, U_site)

    Raises
    ------
    ValueError
        For an unknown site, a batch size below 1, no captions or an unsupported text pooling
        (:func:`real_token_mask`).
    """
    tokens_NT = tokenizer(list(captions))
    real_NT = real_token_mask(tokens_NT, *text_pooling(model, tokenizer))

    def forward(tokens: torch.Tensor) -> None:
        model.encode_text(tokens.to(device))

    return _collect(
        model, sites, _batches(tokens_NT, batch_size), forward, _caption_reduce(real_NT), spill, spill_units
    )


def text_unit_activations(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    sites: Sequence[str],
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """:func:`caption_unit_activations` of every text, each distinct text run once (a class's prompt is shared
    by its images), float32 (len(texts), U_site) per site."""
    codes, distinct = distinct_texts(texts)
    acts = caption_unit_activations(model, tokenizer, list(distinct), sites, batch_size=batch_size, device=device)
    return {site: acts_NU[codes] for site, acts_NU in acts.items()}


def distinct_texts(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The distinct texts in order of first occurrence, and the position among them of every text: int64 (N,)."""
    codes, distinct = pd.factorize(pd.Series(list(texts), dtype=object), sort=False)
    return codes.astype(np.int64), [str(text) for text in distinct]


def auroc_table(
    tower_name: str,
    site: str,
    layer: int,
    auroc_UF: np.ndarray,
    present_NF: np.ndarray,
    names: Sequence[str] = shapes.FEATURES,
    types: Sequence[str] = shapes.FEATURE_TYPES,
) -> pd.DataFrame:
    """The AUROC of one site's units as rows (:data:`AUROC_COLUMNS`), unit-major, concepts in column order.

    Parameters
    ----------
    tower_name : {"visual", "text"}
    site : str
    layer : int
    auroc_UF : numpy.ndarray, float64, (U, F)
    present_NF : numpy.ndarray, bool, (N, F)
        The presence the AUROC was computed on (gives n_pos and n_neg).
    names, types : sequence of F str
        The concepts and their types (:func:`concept_types`); default the 16 Shapes features.

    Raises
    ------
    ValueError
        If the arrays, names and types do not have F columns each.
    """
    n_units, n_features = auroc_UF.shape
    if not present_NF.shape[1] == len(names) == len(types) == n_features:
        raise ValueError(
            f"auroc_table: {n_features} AUROC columns, {present_NF.shape[1]} presence columns, {len(names)} names "
            f"and {len(types)} types; they must agree"
        )
    n_pos_F = present_NF.sum(axis=0)
    return pd.DataFrame(
        {
            "tower": tower_name,
            "site": site,
            "layer": layer,
            "unit": np.repeat(np.arange(n_units), n_features),
            "concept": np.tile(np.asarray(names, dtype=object), n_units),
            "concept_type": np.tile(np.asarray(types, dtype=object), n_units),
            "auroc": auroc_UF.reshape(-1),
            "n_pos": np.tile(n_pos_F, n_units),
            "n_neg": np.tile(present_NF.shape[0] - n_pos_F, n_units),
        }
    )


def selective_counts(table: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """Units with AUROC >= threshold per tower, site (layer) and concept, and the modality-invariant concepts.

    Parameters
    ----------
    table : pandas.DataFrame
        AUROC rows (:data:`AUROC_COLUMNS`) of one or both towers.
    threshold : float, default 0.9

    Returns
    -------
    pandas.DataFrame
        One row per (tower, site, layer, concept), in the table's order: ``tower, site, layer,
        concept, concept_type, n_units, n_selective`` (NaN AUROC counts as not selective),
        ``n_selective_tower`` (selective units of the concept in the whole tower) and
        ``modality_invariant`` (True on every row of a concept with selective units in both the
        ``visual`` and the ``text`` tower). Equal to :func:`tower_counts` of the concatenated
        :func:`site_counts` of the table's parts, for any split of its rows by site.
    """
    return tower_counts(site_counts(table, threshold))


def site_counts(table: pd.DataFrame, threshold: float = 0.9) -> pd.DataFrame:
    """The first seven columns of :func:`selective_counts`: units and selective units per tower, site and concept."""
    keys = ["tower", "site", "layer", "concept", "concept_type"]
    return (
        table.assign(selective=table["auroc"] >= threshold)
        .groupby(keys, sort=False)
        .agg(n_units=("unit", "size"), n_selective=("selective", "sum"))
        .reset_index()
    )


def tower_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`site_counts` rows with ``n_selective_tower`` and ``modality_invariant`` added (:func:`selective_counts`)."""
    counts = counts.reset_index(drop=True)
    counts["n_selective_tower"] = counts.groupby(["tower", "concept"])["n_selective"].transform("sum")
    per_tower = counts.groupby(["concept", "tower"])["n_selective"].sum().unstack("tower")
    both = per_tower.reindex(columns=["visual", "text"]).fillna(0).gt(0).all(axis=1)
    counts["modality_invariant"] = counts["concept"].map(both).astype(bool)
    return counts


def modality_invariant(counts: pd.DataFrame) -> list[str]:
    """The modality-invariant concepts of :func:`selective_counts`, in the order the counts list them."""
    return list(dict.fromkeys(counts.loc[counts["modality_invariant"], "concept"]))
