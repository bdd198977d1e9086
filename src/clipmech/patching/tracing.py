"""Causal tracing of one tower on a set of pairs: recovery per component and circuit sparsity (methods.md Sec. 8).

:func:`trace` runs the sweeps of :mod:`.engine` for every component of the requested families and
returns one table row per component; :func:`circuit` restores growing prefixes of a tower's heads and
MLPs (:func:`clipmech.patching.components.unit_components`) or of its per-token path components
(:func:`clipmech.patching.components.path_components`), ranked by their single-component recovery,
against random orders. For a CLIP-ResNet the attention-pool families run from the captured output of
the last stage (everything they touch comes after it), the ``stage`` family through the whole tower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from clipmech.hooks.sites import hooked
from clipmech.models.towers import Tower, text_pool
from clipmech.patching import corruptions, engine, measures
from clipmech.patching.components import POOL_FAMILIES, Component, components, path_components, unit_components

#: What :func:`circuit` counts: heads and MLPs at every token (the paper's), or the per-token path components.
VIEWS = ("units", "paths")


def vision_metric(correct_QE: torch.Tensor, foil_QE: torch.Tensor, scale: float) -> Callable:
    """m = scale (cos(image, correct_q) - cos(image, foil_q)) of each row's image embedding (vision tower)."""
    correct_QE, foil_QE = F.normalize(correct_QE, dim=-1), F.normalize(foil_QE, dim=-1)

    def metric(image_BE: torch.Tensor, pairs_B: torch.Tensor) -> torch.Tensor:
        image_BE = F.normalize(image_BE, dim=-1)
        correct, foil = correct_QE.to(image_BE)[pairs_B], foil_QE.to(image_BE)[pairs_B]
        return scale * ((image_BE * correct).sum(-1) - (image_BE * foil).sum(-1))

    return metric


def text_metric(image_QE: torch.Tensor, foil_QE: torch.Tensor, scale: float) -> Callable:
    """m = scale (cos(image_q, caption) - cos(image_q, foil_q)) of each row's caption embedding (text tower)."""
    image_QE, foil_QE = F.normalize(image_QE, dim=-1), F.normalize(foil_QE, dim=-1)
    foil_score_Q = (image_QE * foil_QE).sum(-1)

    def metric(text_BE: torch.Tensor, pairs_B: torch.Tensor) -> torch.Tensor:
        text_BE = F.normalize(text_BE, dim=-1)
        image = image_QE.to(text_BE)[pairs_B]
        return scale * ((image * text_BE).sum(-1) - foil_score_Q.to(text_BE)[pairs_B])

    return metric


@dataclass
class TowerRun:
    """What a sweep of one tower needs: the model, its run, the metric and the pairs' inputs.

    Attributes
    ----------
    model : torch.nn.Module
    info : clipmech.models.towers.Tower
    forward : callable
        The tower's run (``model.encode_image`` or ``model.encode_text``).
    metric : callable
        :func:`vision_metric` or :func:`text_metric`.
    clean, corrupt : torch.Tensor, (Q, ...)
        Pixels or token ids of the pairs.
    corruption : EmbeddingCorruption or None
    n_positions : int
        Token positions of the position families (text: up to the longest caption's end of text).
    batch_size : int
    layers, positions : tuple of int or None
        The blocks and token positions swept (``patching.layers``, ``patching.positions``; None: all), in
        :func:`trace` and :func:`circuit` (:func:`clipmech.patching.components.components`).
    """

    model: nn.Module
    info: Tower
    forward: Callable
    metric: Callable
    clean: torch.Tensor
    corrupt: torch.Tensor
    corruption: object
    n_positions: int
    batch_size: int
    layers: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    _maps: tuple = field(default=(), repr=False)
    _baseline: engine.SweepResult | None = field(default=None, repr=False)

    def _pool_run(self) -> tuple[Callable, torch.Tensor, torch.Tensor]:
        """The attention pool alone, on the last stage's captured outputs of the clean and corrupted runs."""
        if self._maps:
            return self.model.visual.attnpool, *self._maps
        last = f"visual.blocks.{self.info.n_layers - 1}.hook_resid_post"
        maps = []
        for inputs, corrupted in ((self.clean, False), (self.corrupt, True)):
            chunks = []
            for start in range(0, inputs.shape[0], self.batch_size):
                chunk = inputs[start : start + self.batch_size]
                rows = torch.full((chunk.shape[0],), corrupted)
                pairs = torch.arange(start, start + chunk.shape[0])
                context = self.corruption.applied(rows, pairs) if self.corruption is not None else nullcontext()
                with torch.inference_mode(), context, hooked(self.model, capture=[last]) as cache:
                    self.forward(chunk)
                    chunks.append(cache[last])
            maps.append(torch.cat(chunks))
        self._maps = tuple(maps)
        return self.model.visual.attnpool, *self._maps

    def baseline(self) -> engine.SweepResult:
        """The clean and corrupted runs of every pair, without patches (computed once)."""
        if self._baseline is None:
            self._baseline = self.sweep([], "denoising")
        return self._baseline

    def kept(self, min_effect: float) -> np.ndarray:
        """:func:`clipmech.patching.measures.kept_pairs` of the baseline (clean run right, corruption moves it by
        ``min_effect``): bool, (Q,)."""
        return measures.kept_pairs(self.baseline(), min_effect)

    def sweep(self, patch_sets: Sequence[Sequence[Component]], direction: str, pool: bool = False):
        """:func:`clipmech.patching.engine.sweep` of these pairs (``pool``: from the last stage's output)."""
        if pool:
            forward, clean, corrupt = self._pool_run()
            return engine.sweep(
                self.model, forward, self.metric, clean, corrupt, patch_sets, direction=direction,
                batch_size=self.batch_size,
            )  # fmt: skip
        return engine.sweep(
            self.model, self.forward, self.metric, self.clean, self.corrupt, patch_sets, direction=direction,
            batch_size=self.batch_size, corruption=self.corruption,
        )  # fmt: skip


def _rows(found: list[Component], result, keep_Q: np.ndarray, n_resamples: int, seed: int) -> list[dict]:
    r_mean, r_low, r_high = measures.mean_ci(measures.recovery(result)[keep_Q], n_resamples, seed)
    d_mean, d_low, d_high = measures.mean_ci(measures.delta_logit(result)[keep_Q], n_resamples, seed)
    return [
        {
            "family": c.family,
            "site": c.site,
            "layer": c.layer,
            "position": c.position,
            "head": c.head,
            "unit": c.unit,
            "n_pairs": int(keep_Q.sum()),
            "recovery": r_mean[k],
            "recovery_low": r_low[k],
            "recovery_high": r_high[k],
            "delta_logit": d_mean[k],
            "delta_logit_low": d_low[k],
            "delta_logit_high": d_high[k],
        }
        for k, c in enumerate(found)
    ]


def trace(
    run: TowerRun, families: Sequence[str], directions: Sequence[str], *, min_effect: float, n_resamples: int, seed: int
) -> tuple[pd.DataFrame, dict]:
    """Single-component recovery of every component of ``families`` (methods.md Sec. 8).

    Returns
    -------
    table : pandas.DataFrame
        One row per direction and component: direction, family, site, layer, position, head, unit,
        n_pairs (kept, :func:`clipmech.patching.measures.kept_pairs`), recovery and delta_logit with
        their bootstrap 95 % intervals (``_low``, ``_high``).
    single : dict of Component to numpy.ndarray (Q,)
        Per-pair single-component recovery of the denoising sweep (the ranking of :func:`circuit`).
    """
    keep_Q = run.kept(min_effect)
    rows, single = [], {}
    for direction in directions:
        for family in families:
            found = components(run.info, [family], run.n_positions, layers=run.layers, positions=run.positions)
            result = run.sweep([[c] for c in found], direction, pool=family in POOL_FAMILIES)
            rows += [{"direction": direction, **row} for row in _rows(found, result, keep_Q, n_resamples, seed)]
            if direction == "denoising":
                r_QK = measures.recovery(result)
                single.update({c: r_QK[:, k] for k, c in enumerate(found)})
    return pd.DataFrame(rows), single


def read_out_positions(run: TowerRun, keep_Q: np.ndarray) -> list[int] | None:
    """The token positions the tower's output is read from, over the kept pairs (distinct, sorted).

    ``[0]`` for an open_clip ViT that pools its class token (``pool_type == "tok"``, no attentional
    pooler) or a timm trunk with ``global_pool == "token"``; for a text tower that reads one token
    (:func:`clipmech.patching.corruptions.pooled_positions`), each kept caption's pooled token. None
    where the output pools several tokens (average or attention-map pooling, the ResNet attention pool).
    """
    if run.info.kind == "text":
        if text_pool(run.model)[0] not in ("argmax", "eos", "last", "first"):
            return None
        return sorted(set(corruptions.pooled_positions(run.model, run.clean[torch.as_tensor(keep_Q)]).tolist()))
    visual = run.model.visual
    if run.info.kind == "vit" and getattr(visual, "pool_type", None) == "tok" and visual.attn_pool is None:
        return [0]
    if run.info.kind == "timm" and getattr(visual.trunk, "global_pool", None) == "token":
        return [0]
    return None


def circuit(
    run: TowerRun,
    single: dict,
    *,
    min_effect: float,
    threshold: float,
    n_points: int,
    n_random: int,
    n_resamples: int,
    seed: int,
    view: str = "units",
    mlp: str = "layer",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Circuit sparsity: recovery of growing prefixes of a tower's components, greedy and random order.

    ``view`` picks the components counted. ``units`` (the causal-tracing paper's measure): every
    attention head and every MLP (a whole layer or each hidden neuron, ``mlp``), each at every token
    (:func:`clipmech.patching.components.unit_components`; ResNet: the attention-pool heads).
    ``paths``: the path components, per token (:func:`clipmech.patching.components.path_components`);
    when the output is read from one token (:func:`read_out_positions`), restoring that token's column,
    its embedding and every block's attention and MLP output there (1 + 2 L components), restores the
    output exactly for every pair and any weights, so the path view's fraction needed is at most
    ``read_out_bound`` by construction.

    The greedy order ranks the components by their mean single-component denoising recovery over the
    kept pairs (from ``single``, else swept here); each prefix is restored at once. The random orders
    are ``n_random`` permutations drawn from ``numpy.random.default_rng(seed)``. The curve is swept at
    about ``n_points`` prefix sizes (:func:`clipmech.patching.measures.prefix_sizes`); the prefix
    needed to reach ``threshold`` is then found exactly, by bisection on the prefix size between the
    first grid size that reaches it and the one before, sweeping one more prefix size per step
    (every permutation, for the random order): :func:`clipmech.patching.measures.crossing`.

    Returns
    -------
    curve : pandas.DataFrame
        view, order (greedy / random), n_components (prefix size), fraction, recovery with its bootstrap
        interval (random: the mean over the permutations, the interval of that mean over pairs).
    summary : pandas.DataFrame
        Per order: view, order, n_total, n_needed (the exact crossing: mean R of the first n_needed
        components >= ``threshold``, of one fewer below it; NaN if no grid prefix reaches it, the whole
        set included), fraction_needed = n_needed / n_total, n_pairs (kept); the ``paths`` view adds
        n_read_out (the components of the read-out tokens' columns) and read_out_bound = n_read_out /
        n_total (NaN where the output pools several tokens).

    Raises
    ------
    ValueError
        For an unknown ``view`` or ``mlp``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown circuit view {view!r}; valid: {', '.join(VIEWS)}")
    if view == "units":
        found = unit_components(run.info, mlp, layers=run.layers)
    else:
        found = path_components(run.info, run.n_positions, layers=run.layers, positions=run.positions)
    pool = run.info.kind == "resnet"
    missing = [c for c in found if c not in single]
    if missing:
        r_QK = measures.recovery(run.sweep([[c] for c in missing], "denoising", pool=pool))
        single = {**single, **{c: r_QK[:, k] for k, c in enumerate(missing)}}
    keep_Q = run.kept(min_effect)
    score = np.array([np.nanmean(single[c][keep_Q]) if keep_Q.any() else 0.0 for c in found])
    greedy = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    rng = np.random.default_rng(seed)
    orders = [("greedy", greedy)] + [("random", rng.permutation(len(found))) for _ in range(n_random)]
    sizes_G = measures.prefix_sizes(len(found), n_points)
    sets = [[found[i] for i in order[:size]] for _, order in orders for size in sizes_G]
    result = run.sweep(sets, "denoising", pool=pool)
    r_QOG = measures.recovery(result).reshape(len(result.m_clean_Q), len(orders), len(sizes_G))[keep_Q]
    curves = {"greedy": r_QOG[:, 0], "random": r_QOG[:, 1:].mean(axis=1)} if n_random else {"greedy": r_QOG[:, 0]}

    def recovery_at(order: str) -> Callable[[int], float]:
        """Mean R over the kept pairs of the prefix of one size, in the curve's arithmetic."""
        chosen = [greedy] if order == "greedy" else [permutation for _, permutation in orders[1:]]

        def at(size: int) -> float:
            prefixes = [[found[i] for i in permutation[:size]] for permutation in chosen]
            r_QO = measures.recovery(run.sweep(prefixes, "denoising", pool=pool))[keep_Q]
            return float((r_QO[:, 0] if order == "greedy" else r_QO.mean(axis=1)).mean(axis=0))

        return at

    bound = {}
    if view == "paths":
        # The bound holds for the whole path set only: NaN when patching.layers or positions restrict it.
        restricted = run.layers is not None or run.positions is not None
        positions = None if pool or restricted else read_out_positions(run, keep_Q)
        n_read_out = np.nan if positions is None else len(positions) * (1 + 2 * run.info.n_layers)
        bound = {"n_read_out": n_read_out, "read_out_bound": n_read_out / len(found)}
    curve_rows, summary_rows = [], []
    for order, r_QG in curves.items():
        mean, low, high = measures.mean_ci(r_QG, n_resamples, seed)
        curve_rows += [
            {
                "view": view,
                "order": order,
                "n_components": int(size),
                "fraction": size / len(found),
                "recovery": mean[g],
                "recovery_low": low[g],
                "recovery_high": high[g],
            }
            for g, size in enumerate(sizes_G)
        ]
        needed = measures.crossing(sizes_G, mean, threshold, recovery_at(order))
        summary_rows.append(
            {
                "view": view,
                "order": order,
                "n_total": len(found),
                "n_needed": np.nan if needed is None else needed,
                "fraction_needed": np.nan if needed is None else needed / len(found),
                "n_pairs": int(keep_Q.sum()),
                **bound,
            }
        )
    return pd.DataFrame(curve_rows), pd.DataFrame(summary_rows)
