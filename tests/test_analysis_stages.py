"""Unit tests of the helpers of the superposition and Grad-CAM stages."""

import numpy as np
import pandas as pd
import pytest

from clipmech.selectivity import unit_table, write
from clipmech.shapes import FEATURES
from clipmech.stages.gradcam import pointing_row, summarise
from clipmech.stages.superposition import read_affinities
from clipmech.superposition import superposition_scores


def test_read_affinities_undoes_the_tsv_rounding(tmp_path):
    rng = np.random.default_rng(0)
    affinity_UF = rng.dirichlet(np.full(len(FEATURES), 0.5), size=40)
    entropy_U = -(affinity_UF * np.log(affinity_UF)).sum(axis=1)
    table = unit_table(entropy_U, affinity_UF, np.zeros(40, int), np.arange(40), np.zeros(40))
    paths = [tmp_path / name for name in ("units.tsv", "topk.tsv", "null.tsv")]
    write(table, pd.DataFrame(), np.zeros(3), *paths)
    raw = pd.read_csv(paths[0], sep="\t")[[f"a_{f}" for f in FEATURES]].to_numpy()
    assert np.abs(raw.sum(axis=1) - 1).max() > 1e-7  # 6 significant digits: rows are off by rounding
    read = read_affinities(paths[0])
    np.testing.assert_allclose(read.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(read, table[[f"a_{f}" for f in FEATURES]].to_numpy(), atol=1e-5)
    assert superposition_scores(read, [("red", "blue")], n_units=10).shape[0] == 1


MASK = np.array(
    [
        [1, 1, 0, 2, 2],
        [1, 1, 0, 2, 2],
        [0, 0, 0, 0, 0],
        [3, 3, 0, 0, 0],
    ],
    dtype=np.uint8,
)


def test_pointing_row():
    heat = np.zeros(MASK.shape)
    heat[0, 0], heat[0, 3], heat[3, 0], heat[2, 2] = 3.0, 2.0, 4.0, 1.0
    row = pointing_row(heat, MASK, target=1, lure=2)
    assert row["target"] == pytest.approx(0.3) and row["lure"] == pytest.approx(0.2)
    assert row["other"] == pytest.approx(0.4) and row["background"] == pytest.approx(0.1)
    assert row["total_energy"] == pytest.approx(10.0)
    assert row["hit"] == 0.0  # object 3 holds more energy than the target
    assert pointing_row(heat, MASK, target=3, lure=2)["hit"] == 1.0
    assert np.isnan(pointing_row(np.zeros(MASK.shape), MASK, target=1, lure=2)["hit"])


def test_summarise_per_prompt_type():
    rows = []
    for prompt_type, target, hit in (
        ("correct", 0.6, 1.0),
        ("correct", 0.4, 0.0),
        ("swapped", 0.2, 0.0),
        ("absent", 0.1, np.nan),
    ):
        rows.append(
            {
                "prompt_type": prompt_type,
                "score": target,
                "target": target,
                "lure": 0.1,
                "other": 0.1,
                "background": 0.1,
                "hit": hit,
            }
        )
    summary = summarise(pd.DataFrame(rows)).set_index("prompt_type")
    assert list(summary.index) == ["correct", "swapped", "absent"]
    assert summary.loc["correct", "target"] == pytest.approx(0.5) and summary.loc["correct", "hit_rate"] == 0.5
    assert summary.loc["correct", "n_prompts"] == 2 and summary.loc["absent", "n_zero_maps"] == 1
    assert np.isnan(summary.loc["absent", "hit_rate"])
