"""The neuron atlas of one model (methods.md Sec. 10): the stage of rule ``build_atlas``."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pandas as pd
import torch

from clipmech.atlas import gather, sections, site
from clipmech.atlas.render import Link, UnitPage
from clipmech.data import datasets, shapes, tables
from clipmech.decomposition import pool as dec
from clipmech.sae.latents import token_latents, token_positions
from clipmech.sae.model import load_sae
from clipmech.stores import activations
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)

#: The CLIP-ResNet site whose channels are the attention-pool input neurons: the last of open_clip's four
#: ModifiedResNet stages (MiCLIP and the concept AUROC name the neurons by it).
RESNET_NEURON_SITE = "visual.blocks.3.hook_resid_post"
POOL_SITE = "visual.attnpool.hook_x"
_MLP_SITE = re.compile(r"visual\.blocks\.(\d+)\.hook_mlp_out")


def _read(path: str | None) -> pd.DataFrame | None:
    return None if path is None else pd.read_csv(path, sep="\t")


class _Pages:
    """The pages of one model under construction, addressed by (kind, key)."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], UnitPage] = {}

    def add(self, units: list[UnitPage]) -> None:
        self.units.update({(u.kind, u.key): u for u in units})

    def link(self, kind: str, key: str, label: str) -> Link | str:
        unit = self.units.get((kind, key))
        return label if unit is None else Link(label, kind, key, unit.page)

    def has_page(self, kind: str, key: str) -> bool:
        unit = self.units.get((kind, key))
        return unit is not None and unit.page

    def attach(self, kind: str, key: str, table) -> None:
        if table is not None and self.has_page(kind, key):
            self.units[(kind, key)].tables.append(table)


def _unit_pages(
    *,
    kind: str,
    keys: list[str],
    titles: list[str],
    layers: list[str],
    acts_NU: np.ndarray,
    counts_NF: np.ndarray,
    params: dict,
    affinity_UF: np.ndarray | None = None,
    entropy_U: np.ndarray | None = None,
) -> list[UnitPage]:
    """Pages (without maps and tables) of the columns of ``acts_NU``; Algorithm 1 computed when not given."""
    if affinity_UF is None:
        affinity_UF, entropy_U = gather.unit_selectivity(acts_NU, counts_NF, params["k"])
    index_KU, values_KU = gather.top_images(acts_NU, params["n_top_images"])
    counts_UB, edges_UB = gather.histograms(acts_NU, params["bins"])
    page_U = gather.page_mask(entropy_U, params["max_units"])
    return [
        UnitPage(
            kind=kind,
            key=keys[u],
            title=titles[u],
            layer=layers[u],
            entropy=float(entropy_U[u]),
            affinity_F=affinity_UF[u],
            hist_counts_B=counts_UB[u],
            hist_edges_B=edges_UB[u],
            images_K=index_KU[:, u],
            acts_K=values_KU[:, u],
            page=bool(page_U[u]),
        )
        for u in range(acts_NU.shape[1])
    ]


def _set_maps(units: list[UnitPage], maps_of, grid: tuple[int, int]) -> None:
    """``maps_of(u, images) -> (K, rows * cols)`` raw maps of the pages' top images, quantised per unit."""
    for u, unit in enumerate(units):
        if unit.page:
            unit.maps_K = gather.quantise_maps(maps_of(u, unit.images_K)).reshape(unit.images_K.size, -1)
            unit.grid = grid


def _mlp_units(store: str, units_tsv: str, counts_NF: np.ndarray, params: dict) -> list[UnitPage]:
    """ViT MLP output channels (methods.md Sec. 2): Algorithm 1 as ``neuron_selectivity`` computed it."""
    ds = activations.open_store(store)
    acts = ds[params["reduction"]].transpose("image", "layer", "neuron")
    n_images, n_layers, width = acts.shape
    acts_NU = np.asarray(acts.values, dtype=np.float32).reshape(n_images, n_layers * width)
    layer_U = np.repeat(acts["layer"].values, width)
    neuron_U = np.tile(acts["neuron"].values, n_layers)
    table = pd.read_csv(units_tsv, sep="\t").set_index(["layer", "neuron"])
    table = table.loc[list(zip(layer_U.tolist(), neuron_U.tolist()))]
    features = [f"a_{f}" for f in shapes.FEATURES]
    units = _unit_pages(
        kind="mlp",
        keys=[f"{layer}-{neuron}" for layer, neuron in zip(layer_U, neuron_U)],
        titles=[
            f"MLP unit {neuron} of block {layer} (visual.blocks.{layer}.hook_mlp_out)"
            for layer, neuron in zip(layer_U, neuron_U)
        ],
        layers=[str(layer) for layer in layer_U],
        acts_NU=acts_NU,
        counts_NF=counts_NF,
        params=params,
        affinity_UF=table[features].to_numpy(dtype=np.float64),
        entropy_U=table["entropy"].to_numpy(dtype=np.float64),
    )
    for unit, p_null in zip(units, table["p_null"].to_numpy()):
        unit.facts.append(("null percentile", f"{p_null:.3g}"))
        unit.facts.append((f"reduction ({params['reduction']}) top activation", f"{unit.acts_K[0]:.3g}"))
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


def _resnet_units(
    attnpool: str, pairs_tsv: str, words_tsv: str, counts_NF: np.ndarray, params: dict
) -> tuple[list[UnitPage], list[UnitPage], pd.DataFrame]:
    """CLIP-ResNet attention-pool neurons and neuron-head pairs (methods.md Sec. 5)."""
    ds = pool_store.open_store(attnpool)
    weights = pool_store.store_weights(ds)
    grid = (int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    x_NTC = np.asarray(ds["x"].values, dtype=np.float32)
    alpha_NHT = np.asarray(ds["alpha"].values, dtype=np.float32)
    raw_NTC = pool_store.neuron_activations(x_NTC, weights).astype(np.float32)
    n_images, _, n_neurons = x_NTC.shape
    n_heads = weights.n_heads
    neurons = _unit_pages(
        kind="neuron",
        keys=[str(c) for c in range(n_neurons)],
        titles=[f"ResNet neuron {c} (attention-pool input, {RESNET_NEURON_SITE})" for c in range(n_neurons)],
        layers=["attnpool"] * n_neurons,
        acts_NU=raw_NTC[:, 0, :],
        counts_NF=counts_NF,
        params=params,
    )
    _set_maps(neurons, lambda c, images: raw_NTC[images, 1:, c], grid)
    s_NQ = dec.pair_scalars(x_NTC.astype(np.float64), alpha_NHT.astype(np.float64)).reshape(
        n_images, n_heads * n_neurons
    )
    heads_Q, neurons_Q = np.divmod(np.arange(n_heads * n_neurons), n_neurons)
    pairs = _unit_pages(
        kind="pair",
        keys=[f"{c}-{h}" for h, c in zip(heads_Q, neurons_Q)],
        titles=[
            f"Neuron-head pair: neuron {c}, head {h} (s_(n,h) of the attention pool)"
            for h, c in zip(heads_Q, neurons_Q)
        ],
        layers=["attnpool"] * heads_Q.size,
        acts_NU=s_NQ,
        counts_NF=counts_NF,
        params=params,
    )
    _set_maps(
        pairs,
        lambda q, images: gather.pair_token_maps(x_NTC[images], alpha_NHT[images], heads_Q[q], neurons_Q[q]),
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
def _sae_units(
    checkpoint: str, latents_tsv: str, store: str, counts_NF: np.ndarray, params: dict
) -> tuple[str, list[UnitPage], np.ndarray, np.ndarray]:
    """The latents of one top-k SAE (methods.md Sec. 7), image-level activation = max over its tokens."""
    sae, meta = load_sae(checkpoint)
    sae = sae.eval()
    site_name = meta["site"]
    ds = activations.open_store(store)
    acts = activations.site_activations(ds, site_name)
    n_images, n_tokens, _ = acts.shape
    prefix = int(ds.attrs["n_prefix_tokens"])
    grid = (int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    positions = token_positions(meta["tokens"], n_tokens, prefix)
    z_NTn = token_latents(sae, acts, positions, max(1, params["batch_tokens"] // positions.size))
    patch = positions >= prefix
    units = _unit_pages(
        kind="sae",
        keys=[f"{site_name}-{i}" for i in range(sae.n_latents)],
        titles=[f"SAE latent {i} at {site_name}" for i in range(sae.n_latents)],
        layers=[site_name] * sae.n_latents,
        acts_NU=z_NTn.max(axis=1),
        counts_NF=counts_NF,
        params=params,
    )
    if patch.sum() == grid[0] * grid[1]:
        _set_maps(units, lambda i, images: z_NTn[images][:, patch, i], grid)
    latents = pd.read_csv(latents_tsv, sep="\t").set_index("latent")
    for i, unit in enumerate(units):
        if i in latents.index:
            r = latents.loc[i]
            unit.facts += [
                ("firing frequency", f"{r['frequency']:.3g}"),
                ("top concept (AUROC)", str(r["top_concept"]) if isinstance(r["top_concept"], str) else ""),
                ("image AUROC", f"{r['auroc_image']:.3g}"),
                ("AP", f"{r['ap']:.3g}"),
            ]
            unit.note = f"frequency {r['frequency']:.2g}"
    dims_nK, weights_nK = gather.strongest_inputs(sae.W_enc.detach().double().numpy(), params["n_reads"])
    return site_name, units, dims_nK, weights_nK


def _miclip_target(site_name: str, kind: str, sae_sites: list[str]) -> tuple[str, str] | None:
    """The atlas kind of a MiCLIP unit set and the key pattern of its units (``{unit}`` filled in), or None."""
    match = _MLP_SITE.fullmatch(site_name)
    if kind == "neurons" and match:
        return "mlp", f"{match.group(1)}-{{unit}}"
    if kind == "neurons" and site_name == RESNET_NEURON_SITE:
        return "neuron", "{unit}"
    if kind == "sae" and site_name in sae_sites:
        return "sae", f"{site_name}-{{unit}}"
    return None


def build_atlas(
    *,
    model: str,
    dataset: str,
    inputs: dict,
    out: str,
    summary: str,
    params: dict,
    sae_sites: list[str],
    miclip_units: list[dict],
) -> dict:
    """Build the atlas site of one model (methods.md Sec. 10; layout: :mod:`clipmech.atlas.site`).

    Parameters
    ----------
    model, dataset : str
        Names, for the pages; ``dataset`` is the one every unit's images come from.
    inputs : dict
        Paths: ``data`` (the dataset directory, always); for a ViT ``store`` (activation store) and ``units``
        (``neuron_selectivity``'s ``units.tsv``); for a CLIP-ResNet ``attnpool``, ``pairs``, ``words``; where
        the model is patched ``auroc`` and ``recovery``; per SAE site (aligned with ``sae_sites``) lists
        ``sae_checkpoints`` and ``sae_latents`` (then ``store`` too); per MiCLIP unit set (aligned with
        ``miclip_units``) lists ``miclip_descriptions``, ``miclip_interventions``, ``miclip_localisation``.
    out : str
        The site directory.
    summary : str
        A TSV written after the site: one row per unit kind (``kind``, ``units``, ``pages``) and the
        site's ``files`` and ``megabytes`` on every row, and ``index`` (the path of its index.html).
    params : dict
        ``max_units`` (pages per kind; null = all), ``n_top_images``, ``thumbnail_size``, ``bins``,
        ``n_reads`` (ViT MLP units linked from an SAE latent), ``batch_tokens`` (SAE tokens encoded at once),
        ``k`` and ``reduction`` (Algorithm 1, as ``selectivity``).
    sae_sites : list of str
    miclip_units : list of dict
        ``{site, kind}`` with ``kind`` ``neurons`` | ``sae``.

    Returns
    -------
    dict
        The site's manifest.

    Raises
    ------
    ValueError
        If the dataset has no object table (Algorithm 1 needs it), or the inputs show no unit.
    """
    start = time.perf_counter()
    data = datasets.load(inputs["data"])
    if data.objects is None:
        raise ValueError(f"the atlas needs a Shapes dataset with an object table; {inputs['data']} has none")
    counts_NF = shapes.feature_counts(data.objects, data.n_images)
    pages = _Pages()
    mlp = _mlp_units(inputs["store"], inputs["units"], counts_NF, params) if "units" in inputs else []
    pages.add(mlp)
    neurons, pairs, pair_table = [], [], None
    if "attnpool" in inputs:
        neurons, pairs, pair_table = _resnet_units(
            inputs["attnpool"], inputs["pairs"], inputs["words"], counts_NF, params
        )
        pages.add(neurons)
        pages.add(pairs)
    saes = []
    for checkpoint, latents in zip(inputs.get("sae_checkpoints", []), inputs.get("sae_latents", [])):
        saes.append(_sae_units(checkpoint, latents, inputs["store"], counts_NF, params))
        pages.add(saes[-1][1])
    if not pages.units:
        raise ValueError(f"no unit of {model} to show: the inputs hold no selectivity, decomposition or SAE results")

    # Links between related units.
    n_layers = len({u.layer for u in mlp})
    readers: dict[str, list] = {}
    for site_name, latents, dims_nK, weights_nK in saes:
        writers = gather.residual_writers(site_name, n_layers) if mlp else []
        for i, unit in enumerate(latents):
            if not unit.page:
                continue
            rows = []
            for dim, weight in zip(dims_nK[i].tolist(), weights_nK[i].tolist()):
                rows.append(
                    (dim, weight, *(pages.link("mlp", f"{layer}-{dim}", f"{layer}-{dim}") for layer in writers))
                )
                for layer in writers:
                    readers.setdefault(f"{layer}-{dim}", []).append((pages.link("sae", unit.key, unit.key), weight))
            unit.tables.append(
                sections.links(
                    "Residual dims the latent reads most (largest |W_enc|), and the MLP units that write them",
                    ("dim", "W_enc", *(f"block {layer} MLP unit" for layer in writers)),
                    rows,
                )
            )
    for key, rows in readers.items():
        pages.attach(
            "mlp",
            key,
            sections.links(
                "SAE latents that read this unit's residual dim (among their strongest inputs)",
                ("latent", "W_enc"),
                sorted(rows, key=lambda r: -abs(r[1])),
            ),
        )
    neurons = [u for u in neurons if u.page]
    pairs = [u for u in pairs if u.page]
    if pair_table is not None:
        for neuron in neurons:
            rows = pair_table[pair_table["neuron"] == int(neuron.key)].sort_values("rank")
            neuron.tables.append(
                sections.links(
                    "Its neuron-head pairs (methods.md Sec. 5), by mean contribution norm",
                    ("pair", "head", "rank", "mean norm", "OMP words"),
                    [
                        (
                            pages.link("pair", f"{r.neuron}-{r.head}", f"{r.neuron}-{r.head}"),
                            r.head,
                            r.rank,
                            r.mean_norm,
                            r.words,
                        )
                        for r in rows.itertuples(index=False)
                    ],
                )
            )
        for pair in pairs:
            c = pair.key.split("-")[0]
            pair.tables.insert(
                0, sections.links("Its neuron", ("neuron",), [(pages.link("neuron", c, f"neuron {c}"),)])
            )

    # Patching: concept AUROCs and the effects of the ResNet's neurons and heads.
    auroc, recovery = _read(inputs.get("auroc")), _read(inputs.get("recovery"))
    for neuron in neurons:
        c = int(neuron.key)
        if auroc is not None:
            pages.attach(
                "neuron",
                neuron.key,
                sections.concept_auroc(auroc, {RESNET_NEURON_SITE: "last stage", POOL_SITE: "pool input"}, c),
            )
        if recovery is not None:
            pages.attach("neuron", neuron.key, sections.recovery(recovery, "pool_neuron", unit=c))
    if recovery is not None:
        for pair in pairs:
            pages.attach("pair", pair.key, sections.recovery(recovery, "pool_head", head=int(pair.key.split("-")[1])))

    # MiCLIP descriptions, localisation and interventions of the unit sets it was run on.
    for entry, descriptions, interventions, localisation in zip(
        miclip_units,
        inputs.get("miclip_descriptions", []),
        inputs.get("miclip_interventions", []),
        inputs.get("miclip_localisation", []),
    ):
        target = _miclip_target(entry["site"], entry["kind"], sae_sites)
        if target is None:
            log.info("MiCLIP units %s (%s) have no atlas pages: skipped", entry["site"], entry["kind"])
            continue
        kind, pattern = target
        descriptions, interventions, localisation = _read(descriptions), _read(interventions), _read(localisation)
        for unit in sorted(set(descriptions["unit"]) | set(localisation["unit"])):
            key = pattern.format(unit=int(unit))
            if not pages.has_page(kind, key):
                continue
            pages.attach(kind, key, sections.miclip_descriptions(descriptions, int(unit)))
            pages.attach(kind, key, sections.miclip_localisation(localisation, interventions, int(unit)))

    units = sorted(
        pages.units.values(),
        key=lambda u: (gather.KINDS.index(u.kind), np.inf if np.isnan(u.entropy) else u.entropy, u.key),
    )
    facts = [
        ("dataset", f"{dataset} ({data.n_images} images)"),
        ("Algorithm 1", f"top {params['k']} images, {params['reduction']} reduction for MLP units"),
        *(
            (f"{kind} units", str(sum(u.kind == kind for u in units)))
            for kind in gather.KINDS
            if any(u.kind == kind for u in units)
        ),
        ("pages", f"{sum(u.page for u in units)} (at most {params['max_units']} per kind, lowest entropy first)"),
    ]
    manifest = site.write_site(
        out, model=model, units=units, images_NHW3=data.images, thumbnail_size=params["thumbnail_size"], facts=facts
    )
    size = sum(f["bytes"] for f in manifest["files"].values())
    tables.write_table(
        pd.DataFrame(
            {
                "kind": list(manifest["units"]),
                "units": list(manifest["units"].values()),
                "pages": [manifest["pages"].get(kind, 0) for kind in manifest["units"]],
                "files": len(manifest["files"]) + 1,
                "megabytes": round(size / 1e6, 3),
                "index": f"{out}/index.html",
            }
        ),
        summary,
    )
    log.info(
        "atlas of %s: %d units, %d pages, %d files, %.2f MB in %.1f s",
        model,
        len(units),
        sum(manifest["pages"].values()),
        len(manifest["files"]) + 1,
        size / 1e6,
        time.perf_counter() - start,
    )
    return manifest
