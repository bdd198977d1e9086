"""The cost of causal tracing before the run (clipmech.costs): its count of patched sets against the sets
clipmech.patching.tracing really sweeps, and the FLOPs of a forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import yaml
from snakemake_cli import TINY

from clipmech import costs
from clipmech.config import load_config
from clipmech.models.towers import Tower, tower
from clipmech.patching import measures, tracing
from clipmech.patching.engine import SweepResult


@dataclass
class CountingRun:
    """What tracing.trace and tracing.circuit use of a TowerRun; every component recovers 1 / ``n`` (an
    additive sweep), and every set and sweep is counted."""

    model: object
    info: Tower
    n_positions: int
    n: int
    layers: tuple | None = None
    positions: tuple | None = None
    sets: int = 0
    sweeps: int = 0

    def sweep(self, patch_sets, direction, pool=False):
        self.sets += len(patch_sets)
        self.sweeps += 1
        m_clean_Q, m_corrupt_Q = np.array([2.0, 3.0]), np.array([0.0, 1.0])
        w_K = np.array([len(patch_set) / self.n for patch_set in patch_sets]).reshape(1, -1)
        return SweepResult(m_clean_Q, m_corrupt_Q, m_corrupt_Q[:, None] + 2.0 * w_K, direction)

    def kept(self, min_effect):
        return measures.kept_pairs(self.sweep([], "denoising"), min_effect)


def tiny_patching(**changes):
    raw = yaml.safe_load(TINY.read_text())
    raw["patching"] = {**raw["patching"], **changes}
    return load_config(raw).patching


@pytest.mark.parametrize(
    "changes",
    [{}, {"layers": [1], "positions": [0, 5]}, {"families": {"transformer": ["resid_pre"], "resnet": ["stage"]}}],
)
def test_the_counted_sets_bound_the_swept_ones(vit, changes):
    patching = tiny_patching(**changes)
    info = tower(vit, "visual")
    run = CountingRun(vit, info, info.n_tokens, n=10_000, layers=patching.layers, positions=patching.positions)
    families = patching.families.transformer
    stats = {"min_effect": 0.5, "n_resamples": 10, "seed": 0}
    _, single = tracing.trace(run, families, patching.directions, **stats)
    circuit = {
        "threshold": 1e-9, "n_points": patching.circuit.n_points, "n_random": patching.circuit.n_random,
        "mlp": patching.circuit.mlp, **stats,
    }  # fmt: skip
    for view in ("units", "paths"):
        tracing.circuit(run, single, view=view, **circuit)
    full, pool, sweeps = costs.tower_sets(info, patching)
    assert pool == 0
    # Exact but for the bisection, counted at its longest.
    assert run.sets <= full and full - run.sets <= 2 * (1 + patching.circuit.n_random) * 12
    assert run.sweeps <= sweeps


def test_layers_and_positions_shrink_the_sweep(vit):
    info = tower(vit, "visual")
    whole, _, _ = costs.tower_sets(info, tiny_patching())
    some, _, _ = costs.tower_sets(info, tiny_patching(layers=[0], positions=[0]))
    assert some < whole / 10


def test_forward_flops_of_the_tiny_vit():
    """2 x multiply-adds of the matrix products: the patch embedding, 2 blocks of attention and MLP, the projection."""
    raw = yaml.safe_load(TINY.read_text())
    config = load_config(raw)
    clip = costs.meta_model(config, "tiny-vit")
    info = tower(clip, "visual")
    T, D = 65, 64  # a class token and 64 patches of 8 x 8, width 64
    patch = 64 * (3 * 8 * 8) * D
    blocks = 2 * (T * D * 3 * D + 2 * T * T * D + T * D * D + 2 * T * D * 4 * D)
    projection = D * 64
    assert costs.forward_flops(clip, info) == 2 * (patch + blocks + projection)


def test_tracing_cost_of_the_tiny_config():
    config = load_config(yaml.safe_load(TINY.read_text()))
    cost = costs.tracing_cost(config, "tiny-vit", "tiny-shapes-pairs")
    assert cost.n_pairs == min(config.patching.n_pairs, config.datasets["tiny-shapes-pairs"].n_scenes)
    assert cost.pool_passes == 0 and cost.passes["visual"] > 0 and cost.flops > 0
    rn = costs.tracing_cost(config, "tiny-rn", "tiny-shapes-pairs")
    assert rn.pool_passes > 0  # the attention-pool families rerun the pool alone
    text = costs.format_costs([cost, rn], tflops=100)
    assert "tiny-vit on tiny-shapes-pairs" in text and "patching.layers" in text
