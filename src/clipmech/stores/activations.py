"""Activation stores: activations of hook sites of a CLIP model in a chunked zarr store, through xarray.

The sites (:mod:`clipmech.hooks.sites`, methods.md Sec. 6) are listed in ``sites``; an entry is a
site name or a pattern with ``*`` for the layer: every layer of ``layers`` (all blocks by default)
in the vision tower, every block in the text tower. The default, ``visual.blocks.*.hook_mlp_out``,
is the MLP outputs of every vision block, the units of methods.md Sec. 2, and is required (every
rule that reads a store reads them). Store layout (an ``xarray.Dataset``):

- ``mean``, ``max``, ``cls`` (image, layer, neuron), float32: per-image reductions over tokens of
  the MLP outputs (methods.md Sec. 2), whichever are configured;
- ``tokens`` (image, layer, token, neuron), float16: the MLP outputs of every token (optional);
- ``embedding`` (image, embed), float32: the L2-normalised image embeddings;
- one variable per further (tower, hook) pair, named ``<tower>_<hook>`` with ``hook_`` dropped and
  dots as underscores (``visual.blocks.1.hook_resid_post`` -> ``visual_resid_post``,
  ``text.blocks.0.mlp.hook_post`` -> ``text_mlp_post``), float16, dims (image, ``<var>_layer``,
  ``<var>_token``, ``<var>_unit``): every token of the site's (N, T, D) tensor, the layers
  in increasing order as the ``<var>_layer`` coordinate. Any (N, T, D) or (N, T, D_mlp) site of a
  transformer tower can be stored: ``hook_resid_pre``, ``hook_attn_out``, ``hook_resid_mid``,
  ``mlp.hook_post``, ``hook_mlp_out``, ``hook_resid_post``.

Text-tower sites need a text per image: a Shapes dataset's caption of the image,
:func:`clipmech.data.shapes.caption` of its objects in table order without attribute dropout
(deterministic, the grammar the models were trained on), tokenised to the full context length
(padding included; the text tower's causal mask keeps padding from changing earlier tokens).

One zarr chunk is one batch of images for one layer. :func:`site_activations` gives the per-token
activations of one stored site by its name, whichever variable holds it. Attributes hold the :class:`StoreProvenance`
(its ``sites`` the canonical names of every stored site) plus the token layout
(``n_prefix_tokens``, ``grid_rows``, ``grid_cols``).

Resumable and atomic (:mod:`clipmech.stores.base`): a job writes into ``<store>.partial``, recording
after every batch how many images are complete. A rerun whose provenance matches resumes after the
last complete batch (a batch is rewritten whole, so a write cut off mid-batch is repaired); any
mismatch starts afresh (the provenance holds the code hash of the extracting rule, so a resume after
a code edit starts afresh too). The final store appears only by renaming the finished partial store,
so a store that exists is complete. Every chunk carries a crc32c checksum, every batch is checked
finite before it is written, and a store with a missing chunk is refused on open (integrity:
:mod:`clipmech.stores.base`).
"""

from __future__ import annotations

import re
from pathlib import Path

import xarray as xr

from clipmech.stores import base

_SITE_PATTERN = re.compile(r"(visual|text)\.blocks\.(\d+)\.(.+)")


def site_variable(tower_name: str, hook: str) -> str:
    """The store variable of a (tower, hook) pair: ``visual_resid_post``, ``text_mlp_post``."""
    return f"{tower_name}_{hook.replace('hook_', '').replace('.', '_')}"


def open_store(store: str | Path) -> xr.Dataset:
    """Open a published activation store lazily (:func:`clipmech.stores.base.open_published`).

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    """
    return base.open_published(store, "activation store")


def site_activations(ds: xr.Dataset, site: str) -> xr.DataArray:
    """The per-token activations of one stored site, lazily: (image, token, unit), float16.

    Parameters
    ----------
    ds : xarray.Dataset
        An activation store (:func:`open_store`).
    site : str
        A canonical site name among the store's ``sites`` attribute (``visual.blocks.1.hook_resid_pre``).
        The vision MLP outputs ``visual.blocks.<l>.hook_mlp_out`` are read from ``tokens`` at layer l, every
        other site from its variable ``<tower>_<hook>`` at its layer (module docstring).

    Returns
    -------
    xarray.DataArray
        Dims (image, token dim, unit dim) of the variable (``token``, ``neuron`` for the MLP outputs,
        ``<var>_token``, ``<var>_unit`` otherwise); a chunk along ``image`` is one zarr chunk of the store.

    Raises
    ------
    ValueError
        If the site is not stored (the message lists the stored sites).
    KeyError
        If the site is a vision MLP output and the store holds no per-token activations (``save_tokens: false``).
    """
    stored = list(ds.attrs["sites"])
    match = _SITE_PATTERN.fullmatch(site)
    if site not in stored or match is None:
        raise ValueError(f"site {site!r} is not in the activation store; it holds: {', '.join(stored)}")
    tower_name, layer, hook = match.group(1), int(match.group(2)), match.group(3)
    if tower_name == "visual" and hook == "hook_mlp_out":
        if "tokens" not in ds:
            raise KeyError(
                f"site {site!r}: the store holds no per-token activations (extraction ran with save_tokens: false)"
            )
        return ds["tokens"].sel(layer=layer)
    var = site_variable(tower_name, hook)
    return ds[var].sel({f"{var}_layer": layer})
