"""The unit pages of an atlas, one kind at a time (methods.md Sec. 10; page content: :mod:`clipmech.atlas.gather`).

Each ``*_units`` function turns one analysis' outputs into :class:`clipmech.atlas.render.UnitPage` objects
(activations, top images, histogram, Algorithm 1 affinities and entropy, patch maps of the pages' top
images, and the analysis' own facts): the MLP output channels of a ViT (methods.md Sec. 2), the attention-pool
neurons and neuron-head pairs of a CLIP-ResNet (Sec. 5), the latents of a top-k SAE (Sec. 7). :class:`Pages`
holds them by (kind, key) while :mod:`clipmech.atlas.links` links them and attaches the other analyses'
tables.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from clipmech.atlas import gather, sections
from clipmech.atlas.render import SHAPES_SOURCE, Link, UnitPage
from clipmech.data import shapes
from clipmech.decomposition import pool
from clipmech.sae.latents import token_codes, token_positions
from clipmech.sae.model import load_sae
from clipmech.stores import activations
from clipmech.stores import attnpool as pool_store
from clipmech.stores.activation_extraction import reduce_tokens
from clipmech.stores.base import spill_array

#: The CLIP-ResNet site whose channels are the attention-pool input neurons: the last of open_clip's four
#: ModifiedResNet stages (MiCLIP and the concept AUROC name the neurons by it).
RESNET_NEURON_SITE = "visual.blocks.3.hook_resid_post"
POOL_SITE = "visual.attnpool.hook_x"
_MLP_SITE = re.compile(r"visual\.blocks\.(\d+)\.hook_mlp_out")


class Pages:
    """The unit pages of one model under construction, addressed by (kind, key)."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], UnitPage] = {}

    def add(self, units: list[UnitPage]) -> None:
        self.units.update({(u.kind, u.key): u for u in units})

    def link(self, kind: str, key: str, label: str) -> Link | str:
        unit = self.units.get((kind, key))
        return label if unit is None else Link(label, kind, key, unit.page, unit.dead)

    def has_page(self, kind: str, key: str) -> bool:
        unit = self.units.get((kind, key))
        return unit is not None and unit.page

    def attach(self, kind: str, key: str, table) -> None:
        if table is not None and self.has_page(kind, key):
            self.units[(kind, key)].tables.append(table)


def summarise(read, n_images: int, n_units: int, params: dict, read_per_image: int = 0) -> gather.UnitSummary:
    """:func:`clipmech.atlas.gather.summarise` of U units' image-level activations, ``read(start, stop)`` ->
    (stop - start, U) one :func:`~clipmech.atlas.gather.image_chunks` chunk at a time, keeping the top
    max(``n_top_images``, ``k``) images (the pages' and Algorithm 1's). ``read_per_image``: the values
    ``read`` holds per image to compute them (its tokens, e.g. T x C); the chunks are sized by the larger
    of that and U, so that neither the tokens read nor the activations grow with the images."""
    return gather.summarise(
        read,
        n_images,
        max(params["n_top_images"], params["k"]),
        params["bins"],
        gather.image_chunks(n_images, max(n_units, read_per_image)),
    )


def unit_pages(
    *,
    kind: str,
    keys: list[str],
    titles: list[str],
    layers: list[str],
    summary: gather.UnitSummary,
    activation: str,
    counts_NF: np.ndarray,
    params: dict,
    affinity_UF: np.ndarray | None = None,
    entropy_U: np.ndarray | None = None,
    concepts: tuple[str, ...] = shapes.FEATURES,
    concept_source: str = SHAPES_SOURCE,
) -> list[UnitPage]:
    """Pages (without maps and tables) of U units from the :func:`summarise` of their image-level activations
    (what they are: ``activation``, named on every page); Algorithm 1 computed when not given
    (:func:`clipmech.atlas.gather.summary_selectivity`), over ``counts_NF``, whose columns are the ``concepts``
    (default the 16 Shapes features; what they are: ``concept_source``).

    A dead unit (:func:`clipmech.analyses.dead.dead_units` of the activations) is marked dead, with NaN
    entropy and affinities (its top images are arbitrary), and gets no page.
    """
    if affinity_UF is None:
        affinity_UF, entropy_U = gather.summary_selectivity(summary, counts_NF, params["k"])
    dead_U = summary.dead_U
    entropy_U = np.where(dead_U, np.nan, entropy_U)
    affinity_UF = np.where(dead_U[:, None], np.nan, affinity_UF)
    index_KU, values_KU = summary.index_KU[: params["n_top_images"]], summary.values_KU[: params["n_top_images"]]
    page_U = gather.page_mask(entropy_U, dead_U, params["max_units"])
    return [
        UnitPage(
            kind=kind,
            key=keys[u],
            title=titles[u],
            layer=layers[u],
            entropy=float(entropy_U[u]),
            affinity_F=affinity_UF[u],
            hist_counts_B=summary.counts_UB[u],
            hist_edges_B=summary.edges_UB[u],
            images_K=index_KU[:, u],
            acts_K=values_KU[:, u],
            activation=activation,
            page=bool(page_U[u]),
            dead=bool(dead_U[u]),
            concepts=tuple(concepts),
            concept_source=concept_source,
        )
        for u in range(dead_U.size)
    ]


def page_images(units: list[UnitPage]) -> np.ndarray:
    """The images shown on the pages among ``units`` (their top images), int64, sorted and distinct: the only
    images whose tokens the maps read."""
    shown = [u.images_K for u in units if u.page]
    return np.unique(np.concatenate(shown)) if shown else np.zeros(0, dtype=np.int64)


def set_maps(units: list[UnitPage], maps_of, grid: tuple[int, int]) -> None:
    """``maps_of(u, rows) -> (K, rows * cols)`` raw maps of the pages' top images, quantised per unit; ``rows``
    are the positions of the top images in :func:`page_images` of ``units``."""
    needed = page_images(units)
    for u, unit in enumerate(units):
        if unit.page:
            rows = np.searchsorted(needed, unit.images_K)
            unit.maps_K = gather.quantise_maps(maps_of(u, rows)).reshape(unit.images_K.size, -1)
            unit.grid = grid


def mlp_units(
    ds: xr.Dataset,
    units_tsv: str,
    counts_NF: np.ndarray,
    params: dict,
    concepts: tuple[str, ...] = shapes.FEATURES,
    concept_source: str = SHAPES_SOURCE,
) -> list[UnitPage]:
    """ViT MLP output channels (methods.md Sec. 2) of the activation store ``ds``: one page per (layer, neuron),
    image-level activation the store's :data:`clipmech.atlas.gather.NEURON_REDUCTION` reduction, maps from its
    ``tokens``. Algorithm 1 and the null percentile as ``neuron_selectivity`` computed them (its ``units.tsv``)
    when it ranks by that reduction (``params["reduction"]``); otherwise Algorithm 1 is computed here, and the
    pages show no null percentile. ``concepts`` name the columns of ``counts_NF`` and the table's ``a_<concept>``
    affinities (the dataset's concepts, as ``neuron_selectivity`` wrote them).

    Raises
    ------
    ValueError
        If the store lacks the reduction (``extraction.reductions``).
    """
    if gather.NEURON_REDUCTION not in ds:
        raise ValueError(
            f"the atlas reads the {gather.NEURON_REDUCTION!r} reduction of the activation store; it has none "
            f"(extraction.reductions)"
        )
    acts = ds[gather.NEURON_REDUCTION].transpose("image", "layer", "neuron")
    n_images, n_layers, width = acts.shape
    summary = summarise(
        lambda start, stop: np.asarray(acts[start:stop].values, dtype=np.float32).reshape(stop - start, -1),
        n_images,
        n_layers * width,
        params,
    )
    layer_U = np.repeat(acts["layer"].values, width)
    neuron_U = np.tile(acts["neuron"].values, n_layers)
    same = params["reduction"] == gather.NEURON_REDUCTION
    table = pd.read_csv(units_tsv, sep="\t").set_index(["layer", "neuron"])
    table = table.loc[list(zip(layer_U.tolist(), neuron_U.tolist()))]
    features = [f"a_{f}" for f in concepts]
    units = unit_pages(
        kind="mlp",
        keys=[f"{layer}-{neuron}" for layer, neuron in zip(layer_U, neuron_U)],
        titles=[
            f"MLP unit {neuron} of block {layer} (visual.blocks.{layer}.hook_mlp_out)"
            for layer, neuron in zip(layer_U, neuron_U)
        ],
        layers=[str(layer) for layer in layer_U],
        summary=summary,
        activation=gather.ACTIVATIONS["mlp"],
        counts_NF=counts_NF,
        params=params,
        affinity_UF=table[features].to_numpy(dtype=np.float64) if same else None,
        entropy_U=table["entropy"].to_numpy(dtype=np.float64) if same else None,
        concepts=concepts,
        concept_source=concept_source,
    )
    if same:
        for unit, p_null in zip(units, table["p_null"].to_numpy()):
            unit.facts.append(("null percentile", f"{p_null:.3g}"))
    prefix = int(ds.attrs["n_prefix_tokens"])
    grid = (int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    for layer in np.unique(layer_U):
        chosen = [u for u in range(len(units)) if units[u].page and layer_U[u] == layer]
        if not chosen:
            continue
        needed = np.unique(np.concatenate([units[u].images_K for u in chosen]))
        tokens_NTD = np.asarray(ds["tokens"].sel(layer=layer).isel(image=needed).values, dtype=np.float32)
        row = {int(i): r for r, i in enumerate(needed)}
        for u in chosen:
            rows = [row[int(i)] for i in units[u].images_K]
            units[u].maps_K = gather.quantise_maps(tokens_NTD[rows, prefix:, neuron_U[u]])
            units[u].grid = grid
    return units


def resnet_units(
    attnpool: str, pairs_tsv: str, words_tsv: str, counts_NF: np.ndarray, params: dict
) -> tuple[list[UnitPage], list[UnitPage], pd.DataFrame]:
    """CLIP-ResNet attention-pool neurons and neuron-head pairs (methods.md Sec. 5) of the attention-pool store
    ``attnpool``, with ``decompose_attnpool``'s pair table and ``decompose_text``'s OMP words. A neuron's
    image-level activation is the mean of its raw activations over the feature map's positions (the spatial
    tokens; :func:`clipmech.stores.activation_extraction.reduce_tokens`), a pair's its scalar s_{n,h}.

    Returns
    -------
    neurons, pairs : list of UnitPage
    table : pandas.DataFrame
        The pair table merged with the words (``head``, ``neuron``, ``rank``, ``mean_norm``, ``words``, ...).
    """
    ds = pool_store.open_store(attnpool)
    weights = pool_store.store_weights(ds)
    grid = (int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    n_images, n_tokens, n_neurons = ds["x"].shape
    n_heads = weights.n_heads
    per_image = n_tokens * (n_neurons + n_heads)  # x and alpha of one image

    def tokens(images) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.asarray(ds["x"].isel(image=images).values, dtype=np.float32),
            np.asarray(ds["alpha"].isel(image=images).values, dtype=np.float32),
        )

    def neuron_acts(start: int, stop: int) -> np.ndarray:
        raw_BTC = pool_store.neuron_activations(tokens(slice(start, stop))[0], weights).astype(np.float32)
        return reduce_tokens(torch.from_numpy(raw_BTC[:, None]), gather.NEURON_REDUCTION, 1)[:, 0].numpy()

    def pair_acts(start: int, stop: int) -> np.ndarray:
        x_BTC, alpha_BHT = tokens(slice(start, stop))
        return pool.pair_scalars(x_BTC.astype(np.float64), alpha_BHT.astype(np.float64)).reshape(stop - start, -1)

    neurons = unit_pages(
        kind="neuron",
        keys=[str(c) for c in range(n_neurons)],
        titles=[f"ResNet neuron {c} (attention-pool input, {RESNET_NEURON_SITE})" for c in range(n_neurons)],
        layers=["attnpool"] * n_neurons,
        summary=summarise(neuron_acts, n_images, n_neurons, params, per_image),
        activation=gather.ACTIVATIONS["neuron"],
        counts_NF=counts_NF,
        params=params,
    )
    raw_NTC = pool_store.neuron_activations(tokens(page_images(neurons))[0], weights).astype(np.float32)
    set_maps(neurons, lambda c, rows: raw_NTC[rows, 1:, c], grid)
    heads_Q, neurons_Q = np.divmod(np.arange(n_heads * n_neurons), n_neurons)
    pairs = unit_pages(
        kind="pair",
        keys=[f"{c}-{h}" for h, c in zip(heads_Q, neurons_Q)],
        titles=[
            f"Neuron-head pair: neuron {c}, head {h} (s_(n,h) of the attention pool)"
            for h, c in zip(heads_Q, neurons_Q)
        ],
        layers=["attnpool"] * heads_Q.size,
        summary=summarise(pair_acts, n_images, heads_Q.size, params, per_image),
        activation=gather.ACTIVATIONS["pair"],
        counts_NF=counts_NF,
        params=params,
    )
    x_NTC, alpha_NHT = tokens(page_images(pairs))
    set_maps(
        pairs,
        lambda q, rows: gather.pair_token_maps(x_NTC[rows], alpha_NHT[rows], heads_Q[q], neurons_Q[q]),
        grid,
    )
    table = pd.read_csv(pairs_tsv, sep="\t").merge(
        pd.read_csv(words_tsv, sep="\t")[["head", "neuron", "words", "cos_sparse_u"]], on=["head", "neuron"], how="left"
    )
    by_key = {u.key: u for u in pairs}
    for r in table.itertuples(index=False):
        unit = by_key[f"{r.neuron}-{r.head}"]
        unit.facts += [
            ("rank by mean norm", str(r.rank)),
            ("mean contribution norm", f"{r.mean_norm:.3g}"),
            ("|u|", f"{r.u_norm:.3g}"),
            ("mean s", f"{r.s_mean:.3g}"),
        ]
        if pd.notna(r.cos_pc_u):
            unit.facts.append(("|cos(PC1, u)|", f"{r.cos_pc_u:.4g}"))
        if isinstance(r.words, str):
            unit.note = ", ".join(item.split(" (")[0] for item in r.words.split("), ")[:3])
            unit.facts.append(("cos(sparse u, u)", f"{r.cos_sparse_u:.3g}"))
            unit.tables.append(sections.omp_words(r.words))
    return neurons, pairs, table


@torch.inference_mode()
def sae_units(
    checkpoint: str,
    ds: xr.Dataset,
    counts_NF: np.ndarray,
    params: dict,
    concepts: tuple[str, ...] = shapes.FEATURES,
    concept_source: str = SHAPES_SOURCE,
) -> tuple[str, list[UnitPage], np.ndarray, np.ndarray]:
    """The latents of one top-k SAE (methods.md Sec. 7) on the tokens of the activation store ``ds``, held as
    top-k codes (:func:`clipmech.sae.latents.token_codes`), image-level activation the maximum over the patch
    tokens (:meth:`clipmech.sae.latents.TokenCodes.image_max`, as the SAE's concept alignment reads it);
    Algorithm 1 over ``counts_NF``, whose columns are the ``concepts``; maps of the pages' top images from the
    codes. Encoded ``params["batch_tokens"]`` tokens at a time (methods.md Sec. 10: memory bounded in N).

    Returns
    -------
    site_name : str
    units : list of UnitPage
    dims_nK, weights_nK : numpy.ndarray, (n_latents, n_reads)
        Each latent's strongest residual inputs (:func:`clipmech.atlas.gather.strongest_inputs`).
    """
    sae, meta = load_sae(checkpoint)
    sae = sae.eval()
    site_name = meta["site"]
    acts = activations.site_activations(ds, site_name)
    n_images, n_tokens, _ = acts.shape
    prefix = int(ds.attrs["n_prefix_tokens"])
    grid = (int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    positions = token_positions(meta["tokens"], n_tokens, prefix)
    batch_images = max(1, params["batch_tokens"] // positions.size)
    patch = positions >= prefix
    with tempfile.TemporaryDirectory(prefix="atlas-sae-") as scratch:
        # The image-level activations, (N, n), spilled to disk (read and written as files, not mapped into
        # memory): encoded once, read twice by summarise. One batch of ``batch_tokens`` tokens at a time, its
        # codes dropped once reduced to image maxima.
        image_Nn = spill_array(Path(scratch) / "image_max", (batch_images, sae.n_latents), sae.n_latents)
        for start, stop in gather.image_chunks(n_images, positions.size, params["batch_tokens"]):
            codes = token_codes(sae, acts.isel(image=slice(start, stop)), positions, batch_images)
            image_Nn.append(codes.image_max(patch), axis=0)
        summary = summarise(lambda start, stop: image_Nn[start:stop], n_images, sae.n_latents, params)
    units = unit_pages(
        kind="sae",
        keys=[f"{site_name}-{i}" for i in range(sae.n_latents)],
        titles=[f"SAE latent {i} at {site_name}" for i in range(sae.n_latents)],
        layers=[site_name] * sae.n_latents,
        summary=summary,
        activation=gather.ACTIVATIONS["sae"] if patch.any() else gather.SAE_CLASS_ACTIVATION,
        counts_NF=counts_NF,
        params=params,
        concepts=concepts,
        concept_source=concept_source,
    )
    if patch.sum() == grid[0] * grid[1]:
        codes = token_codes(sae, acts.isel(image=page_images(units)), positions, batch_images)
        set_maps(units, lambda i, rows: codes.columns(slice(i, i + 1))[rows][:, patch, 0], grid)
    dims_nK, weights_nK = gather.strongest_inputs(sae.W_enc.detach().double().numpy(), params["n_reads"])
    return site_name, units, dims_nK, weights_nK


def miclip_target(site_name: str, kind: str, sae_sites: list[str]) -> tuple[str, str] | None:
    """The atlas kind of a MiCLIP unit set (``kind`` ``neurons`` | ``sae`` at ``site_name``) and the key pattern
    of its units (``{unit}`` filled in), or None when the atlas has no pages of them."""
    match = _MLP_SITE.fullmatch(site_name)
    if kind == "neurons" and match:
        return "mlp", f"{match.group(1)}-{{unit}}"
    if kind == "neurons" and site_name == RESNET_NEURON_SITE:
        return "neuron", "{unit}"
    if kind == "sae" and site_name in sae_sites:
        return "sae", f"{site_name}-{{unit}}"
    return None
