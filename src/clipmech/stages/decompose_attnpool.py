"""The neuron x head decomposition and its checks (methods.md Sec. 5): the stage of rule ``decompose_attnpool``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from clipmech import artefacts
from clipmech.data import tables
from clipmech.decomposition import components, pool
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)

#: The rule that writes the component scores (named when their file fails its sha256 check).
RULE = "decompose_attnpool"


def decompose_attnpool(*, store: str, out: dict, decomposition: dict) -> None:
    """Scalars, norms and the checks of the decomposition (methods.md Sec. 5 tests).

    ``out["pairs"]``: every pair ranked by mean contribution norm (rank, head, neuron, mean_norm,
    u_norm, s_mean, and for the top ``n_checked`` pairs cos_pc_u and explained);
    ``out["summary"]``: reconstruction error of the stored outputs, rank-1 statistics of pairs vs
    neurons, norm shares; ``out["scores"]``: the mean contribution norms of every pair, neuron and head and
    the top pairs' cos_pc_u, unrounded (:func:`clipmech.decomposition.components.save_component_scores`),
    what rule ``plot_decomposition`` draws with the summary. ``decomposition`` holds the config's
    ``decomposition`` keys ``chunk_size``, ``n_checked``, ``pc_top_k`` and ``max_rel_err``.

    Two passes over the store, ``chunk_size`` images at a time (:func:`clipmech.stores.attnpool.iter_scalars`):
    the first sums the scores and scalars (:class:`clipmech.decomposition.components.ScoreSums`; chunk sums
    change them only by rounding) and keeps each image's reconstruction error; the second keeps the
    ``pc_top_k`` top-norm images of the checked pairs and neurons
    (:class:`clipmech.decomposition.components.TopContributions`). Memory holds one chunk, N errors, and
    (pc_top_k, n_checked, H) scalars, never the scalars of all images.

    Raises
    ------
    RuntimeError
        If the largest relative reconstruction error exceeds ``max_rel_err``.
    """
    ds = pool_store.open_store(store)
    parts = pool_store.parts(ds)
    chunk_size = decomposition["chunk_size"]
    # pass 1: scores, mean scalars and the per-image reconstruction error
    sums = components.ScoreSums(parts.u_HCE)
    rel_err = []
    for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size):
        sums.add(s_NHC)
        y_hat_NE = pool.reconstruct_output(s_NHC, parts.u_HCE, parts.bias_E, chunk_size)
        rel_err.append(np.linalg.norm(y_hat_NE - batch.y_NE, axis=1) / np.linalg.norm(batch.y_NE, axis=1))
    rel_err_N = np.concatenate(rel_err)
    if rel_err_N.max() > decomposition["max_rel_err"]:  # before the second pass: nothing is written
        raise RuntimeError(
            f"the decomposition does not reproduce the stored outputs: max relative error "
            f"{rel_err_N.max():.3g} > max_rel_err={decomposition['max_rel_err']}"
        )
    scores = sums.scores()
    h, c = scores["pair"].shape
    order = np.argsort(-scores["pair"].ravel(), kind="stable")
    heads, neurons = np.divmod(order, c)
    n_checked = min(decomposition["n_checked"], h * c)
    top_neurons = np.argsort(-scores["neuron"], kind="stable")[: min(decomposition["n_checked"], c)]
    # pass 2: the top-norm images of the checked pairs and neurons
    top = components.top_contributions(
        ((batch.images.start, s_NHC) for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size)),
        parts.u_HCE,
        heads[:n_checked],
        neurons[:n_checked],
        top_neurons,
        decomposition["pc_top_k"],
    )
    rank_one = top.pair_rank_one()
    _, neuron_explained = top.neuron_directions()
    table = pd.DataFrame(
        {
            "rank": np.arange(1, h * c + 1),
            "head": heads,
            "neuron": neurons,
            "mean_norm": scores["pair"].ravel()[order],
            "u_norm": pool.direction_norms(parts.u_HCE).ravel()[order],
            "s_mean": sums.s_mean().ravel()[order],
        }
    )
    table = table.merge(rank_one, on=["head", "neuron"], how="left")
    tables.write_table(table, out["pairs"])

    def share(level: str, fraction: float) -> float:
        score = np.sort(np.ravel(scores[level]))[::-1]
        return float(score[: max(1, int(round(fraction * score.size)))].sum() / score.sum())

    summary = {
        "n_images": int(sums.n_images),
        "n_heads": int(h),
        "n_neurons": int(c),
        "n_tokens": int(ds.sizes["token"]),
        "grid": list(parts.grid),
        "embed_dim": int(parts.u_HCE.shape[2]),
        "reconstruction_rel_err_max": float(rel_err_N.max()),
        "reconstruction_rel_err_median": float(np.median(rel_err_N)),
        "n_checked": int(n_checked),
        "pc_top_k": int(decomposition["pc_top_k"]),
        "pair_cos_pc_u_min": float(rank_one["cos_pc_u"].min()),
        "pair_cos_pc_u_median": float(rank_one["cos_pc_u"].median()),
        "pair_pc1_explained_median": float(rank_one["explained"].median()),
        "neuron_pc1_explained_median": float(np.nanmedian(neuron_explained)),
        "norm_share_top_10pct": {level: share(level, 0.1) for level in scores},
        "norm_share_top_20pct": {level: share(level, 0.2) for level in scores},
    }
    log.info("decomposition summary: %s", summary)
    artefacts.write_text(out["summary"], json.dumps(summary, indent=2) + "\n")
    components.save_component_scores(out["scores"], scores, rank_one["cos_pc_u"].to_numpy(), rule=RULE)
