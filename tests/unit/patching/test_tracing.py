"""Circuit sparsity (clipmech.patching.tracing.circuit; methods.md Sec. 8) on a planted additive circuit.

The tiny ViT's visual tower gives the path components (the ``paths`` view) (65 tokens: 65 embeddings + 2 blocks x 2 outputs
x 65 = 325); the sweep is replaced by a planted one in which restoring a set of components recovers
exactly the sum of their planted weights, R = sum_c w_c, for every pair: ``N_CIRCUIT`` components of
weight 1 / N_CIRCUIT each, all others 0. The curve is then known for every prefix of every order.
"""

from dataclasses import dataclass

import numpy as np
import pytest

from clipmech.models.towers import Tower, tower
from clipmech.patching import measures, tracing
from clipmech.patching.components import path_components
from clipmech.patching.engine import SweepResult

N_CIRCUIT = 20
THRESHOLD = 0.78  # reached by 16 of the 20 (0.80), not by 15 (0.75)
N_POINTS = 8  # the grid of 325 components: 1, 2, 5, 12, 27, 62, 142, 325


@dataclass
class PlantedRun:
    """What :func:`tracing.circuit` uses of a :class:`tracing.TowerRun`, with a planted additive sweep."""

    model: object
    info: Tower
    n_positions: int
    weight: dict
    m_clean_Q: np.ndarray
    m_corrupt_Q: np.ndarray
    swept: list
    layers: tuple | None = None
    positions: tuple | None = None

    def sweep(self, patch_sets, direction, pool=False):
        self.swept.append(len(patch_sets))
        w_K = np.array([sum(self.weight.get(c, 0.0) for c in patch_set) for patch_set in patch_sets])
        effect_Q = self.m_clean_Q - self.m_corrupt_Q
        m_patched_QK = self.m_corrupt_Q[:, None] + effect_Q[:, None] * w_K.reshape(1, -1)
        return SweepResult(self.m_clean_Q, self.m_corrupt_Q, m_patched_QK, direction)

    def kept(self, min_effect):
        return measures.kept_pairs(self.sweep([], "denoising"), min_effect)


@pytest.fixture
def planted(vit):
    info = tower(vit, "visual")
    paths = path_components(info)
    circuit = paths[3 :: len(paths) // N_CIRCUIT][:N_CIRCUIT]  # spread over embeddings, layers and tokens
    weight = {c: 1.0 / N_CIRCUIT for c in circuit}
    m_clean_Q, m_corrupt_Q = np.array([3.0, 2.0, 4.0]), np.array([0.0, -1.0, 1.5])
    return PlantedRun(vit, info, info.n_tokens, weight, m_clean_Q, m_corrupt_Q, []), paths


def _circuit(run, n_random, seed=7):
    single = {}
    return tracing.circuit(
        run, single, min_effect=0.5, threshold=THRESHOLD, n_points=N_POINTS, n_random=n_random, n_resamples=50,
        seed=seed, view="paths",
    )  # fmt: skip


def test_a_planted_circuit_needs_its_exact_count(planted):
    """Greedy: the 20 planted components rank first and 16 of them reach 0.78; the grid jumps from 12 to 27."""
    run, paths = planted
    curve, summary = _circuit(run, n_random=2)
    assert len(paths) == 325
    assert curve.loc[curve["order"] == "greedy", "n_components"].tolist() == [1, 2, 5, 12, 27, 62, 142, 325]
    greedy = summary.set_index("order").loc["greedy"]
    assert greedy["n_needed"] == 16 and greedy["fraction_needed"] == 16 / 325
    # Random orders: the mean over the 2 permutations (drawn as circuit draws them) of each prefix's weight.
    rng = np.random.default_rng(7)
    weight_P = np.array([run.weight.get(c, 0.0) for c in paths])
    permutations = [rng.permutation(len(paths)) for _ in range(2)]
    r_K = np.mean([np.cumsum(weight_P[p]) for p in permutations], axis=0)
    expected = int(np.flatnonzero(r_K >= THRESHOLD)[0]) + 1
    assert summary.set_index("order").loc["random", "n_needed"] == expected
    assert summary["n_pairs"].tolist() == [3, 3] and (summary["view"] == "paths").all()
    # The class token's column (its embedding, 2 attention and 2 MLP outputs) restores the output.
    assert (summary["n_read_out"] == 5).all() and (summary["read_out_bound"] == 5 / 325).all()


def test_the_crossing_costs_a_bisection_not_every_prefix(planted):
    run, _ = planted
    _circuit(run, n_random=0)
    # the baseline sweeps (kept), the grid (8 prefixes), then one prefix per bisection step in 12..27
    grid = run.swept.index(N_POINTS)
    assert run.swept[grid + 1 :] == [1] * int(np.ceil(np.log2(27 - 12)))


def test_no_crossing_when_the_whole_set_falls_short(planted):
    run, _ = planted
    run.weight = {c: w * 0.7 for c, w in run.weight.items()}
    _, summary = _circuit(run, n_random=1)
    assert summary["n_needed"].isna().all() and summary["fraction_needed"].isna().all()


def test_crossing():
    r_K = np.linspace(0.01, 1.0, 100)  # R of prefix k is k / 100
    calls = []

    def at(size):
        calls.append(size)
        return r_K[size - 1]

    sizes_G = np.array([1, 10, 50, 100])
    assert measures.crossing(sizes_G, r_K[sizes_G - 1], 0.8, at) == 80
    assert len(calls) == 6 and not set(calls) & set(sizes_G.tolist())
    assert measures.crossing(sizes_G, r_K[sizes_G - 1], 0.005, at) == 1
    assert measures.crossing(sizes_G, r_K[sizes_G - 1], 1.5, at) is None
    assert measures.crossing(sizes_G, np.full(4, np.nan), 0.8, at) is None


def test_unknown_view_and_mlp_units(planted):
    run, _ = planted
    with pytest.raises(ValueError, match="unknown circuit view 'tokens'; valid: units, paths"):
        tracing.circuit(run, {}, min_effect=0.5, threshold=0.8, n_points=4, n_random=0, n_resamples=10, seed=0,
                        view="tokens")  # fmt: skip
    with pytest.raises(ValueError, match="unknown MLP unit 'block'; valid: layer, neuron"):
        tracing.circuit(run, {}, min_effect=0.5, threshold=0.8, n_points=4, n_random=0, n_resamples=10, seed=0,
                        mlp="block")  # fmt: skip


def test_layers_and_positions_restrict_every_component_set(vit):
    """patching.layers / positions: the same components as the whole sets, filtered (sizing a sweep)."""
    from clipmech.patching.components import components, unit_components

    info = tower(vit, "visual")
    whole = components(info, ["resid_pre", "head", "neuron"])
    some = components(info, ["resid_pre", "head", "neuron"], layers=[1, 7], positions=[0, 3, 999])
    assert some == [c for c in whole if c.layer == 1 and (c.position in (0, 3) or c.position is None)]
    assert {c.position for c in some if c.family == "resid_pre"} == {0, 3}  # 999: beyond the 65 tokens
    assert unit_components(info, layers=[0]) == [c for c in unit_components(info) if c.layer == 0]
    paths = path_components(info, layers=[1], positions=[0])
    assert [(c.family, c.layer, c.position) for c in paths] == [
        ("resid_pre", 0, 0),  # the embedding of the kept token
        ("attn_out", 1, 0),
        ("mlp_out", 1, 0),
    ]


def test_a_restricted_path_view_has_no_read_out_bound(planted):
    run, _ = planted
    run.layers, run.positions = (1,), (0, 1)
    _, summary = _circuit(run, n_random=1)
    assert summary["n_total"].iloc[0] == 2 + 2 * 2  # 2 embeddings, then attention and MLP of block 1 at 2 tokens
    assert summary["read_out_bound"].isna().all()
