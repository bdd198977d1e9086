"""Unit tests of clipmech.analyses.superposition (methods.md Sec. 3)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import NearestCentroid

from clipmech.analyses.superposition import (
    correlation_by_type,
    correlation_table,
    feature_pairs,
    lowest_entropy_units,
    separability,
    separability_table,
    streamed_separability_table,
    superposition_pair_table,
    superposition_scores,
)
from clipmech.data.shapes import FEATURES

F = {name: i for i, name in enumerate(FEATURES)}


def test_feature_pairs_counts():
    pairs = feature_pairs()
    assert len(pairs) == 35
    assert len(set(pairs)) == 35
    kinds = pd.Series([_kind(f1) + "-" + _kind(f2) for f1, f2 in pairs]).value_counts()
    assert kinds.to_dict() == {"colour-colour": 15, "shape-shape": 10, "position-position": 10}
    everything = feature_pairs(cross_type=True)
    assert len(everything) == 120 == len({frozenset(p) for p in everything})
    assert everything[:35] == pairs


def _kind(feature):
    return "shape" if F[feature] < 5 else "colour" if F[feature] < 11 else "position"


def _affinity_rows(*entries):
    """Affinity rows from {feature: value} dicts; the remainder is spread over the other features."""
    rows = []
    for entry in entries:
        row = np.zeros(len(FEATURES))
        for feature, value in entry.items():
            row[F[feature]] = value
        rest = [f for f in range(len(FEATURES)) if FEATURES[f] not in entry]
        row[rest] = (1.0 - row.sum()) / len(rest)
        rows.append(row)
    return np.array(rows)


def test_scores_hand_built():
    affinity_UF = np.vstack(
        [
            _affinity_rows({"circle": 0.5, "triangle": 0.5}),  # polysemantic: entropy ln 2
            _affinity_rows({"circle": 1.0}),  # monosemantic: entropy 0
            np.full((1, 16), 1 / 16),  # uniform: entropy ln 16
        ]
    )
    pairs = [("circle", "triangle"), ("red", "green")]
    all3 = superposition_scores(affinity_UF, pairs, n_units=3).set_index(["f1", "f2"])
    assert all3.loc[("circle", "triangle"), "S_ratio"] == pytest.approx(2 / 3)
    assert all3.loc[("circle", "triangle"), "S_joint"] == pytest.approx((0.5 + 0.0 + 1 / 16) / 3)
    assert all3.loc[("red", "green"), "S_ratio"] == 0.0  # 0 + 0 + 1/8 never exceeds 0.3
    assert all3.loc[("red", "green"), "S_joint"] == pytest.approx(1 / 48)
    assert (all3["n_units"] == 3).all()
    # the two lowest-entropy units are the monosemantic and the polysemantic one
    assert list(lowest_entropy_units(affinity_UF, 2)) == [1, 0]
    top2 = superposition_scores(affinity_UF, pairs, n_units=2).set_index(["f1", "f2"])
    assert top2.loc[("circle", "triangle"), "S_ratio"] == 1.0
    assert top2.loc[("circle", "triangle"), "S_joint"] == pytest.approx(0.25)
    # ratio counts a unit selective for one feature alone; joint does not
    mono = superposition_scores(affinity_UF[[1]], pairs[:1], n_units=5)
    assert mono.loc[0, "S_ratio"] == 1.0 and mono.loc[0, "S_joint"] == 0.0 and mono.loc[0, "n_units"] == 1
    high = superposition_scores(affinity_UF, pairs[:1], n_units=3, threshold=0.99)
    assert high.loc[0, "S_ratio"] == pytest.approx(2 / 3)


def test_scores_reject_bad_input():
    good = np.full((2, 16), 1 / 16)
    with pytest.raises(ValueError, match="sum to 1"):
        superposition_scores(good * 2, [("red", "blue")])
    with pytest.raises(ValueError, match="shape"):
        superposition_scores(good[:, :15], [("red", "blue")])
    with pytest.raises(ValueError, match="'purple'"):
        superposition_scores(good, [("red", "purple")])
    with pytest.raises(ValueError, match="threshold"):
        superposition_scores(good, [("red", "blue")], threshold=-0.1)


def _clusters(rng, centre_a, centre_b, n=40, noise=0.05):
    return (
        centre_a + noise * rng.standard_normal((n, centre_a.size)),
        centre_b + noise * rng.standard_normal((n, centre_b.size)),
    )


@pytest.mark.parametrize("cv", ["loo", "holdout"])
def test_separability_separated_vs_identical(cv):
    rng = np.random.default_rng(0)
    e = np.eye(16)
    a, b = _clusters(rng, e[0], e[1])
    d_sep, m_sep = separability(a, b, cv=cv, rng=np.random.default_rng(1))
    assert d_sep == pytest.approx(np.sqrt(2), abs=0.05)
    assert m_sep == 0.0
    a, b = _clusters(rng, e[0], e[0], n=200)
    d_same, m_same = separability(a, b, cv=cv, rng=np.random.default_rng(1))
    assert d_same < 0.03
    assert abs(m_same - 0.5) < 0.12


def test_loo_closed_form_matches_sklearn():
    rng = np.random.default_rng(3)
    a, b = _clusters(rng, np.zeros(8), np.full(8, 0.1), n=15, noise=0.3)
    b = b[:11]  # unequal class sizes
    _, m = separability(a, b, cv="loo")
    x = np.vstack([a, b])
    y = np.repeat([0, 1], [len(a), len(b)])
    predicted = cross_val_predict(NearestCentroid(), x, y, cv=LeaveOneOut())
    assert 0 < m < 1
    assert m == pytest.approx(np.mean(predicted != y))


def test_separability_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="at least 2"):
        separability(x, x[:1])
    with pytest.raises(ValueError, match="'kfold'"):
        separability(x, x, cv="kfold")
    with pytest.raises(ValueError, match="rng"):
        separability(x, x, cv="holdout")


def _synthetic_dataset(rng, n_images=120, width=24):
    """Images with one or two colours; the embedding is the sum of a direction per colour present,
    so 'red' vs 'green' is well separated and 'blue' vs 'pink' (the same direction) is not."""
    direction = rng.standard_normal((len(FEATURES), width))
    direction[F["pink"]] = direction[F["blue"]]
    colours = ["red", "green", "blue", "pink"]
    counts_NF = np.zeros((n_images, len(FEATURES)))
    for i in range(n_images):
        for c in rng.choice(colours, size=rng.integers(1, 3), replace=False):
            counts_NF[i, F[c]] = 1
    counts_NF[0, F["black"]] = 1  # 'black' only in one image: every pair with it is skipped
    emb_NE = counts_NF @ direction + 0.1 * rng.standard_normal((n_images, width))
    return emb_NE, counts_NF


@pytest.mark.parametrize("pca_fit", ["all", "pair"])
def test_separability_table(pca_fit):
    rng = np.random.default_rng(5)
    emb_NE, counts_NF = _synthetic_dataset(rng)
    pairs = [("red", "green"), ("blue", "pink"), ("red", "black"), ("circle", "square")]
    table = separability_table(emb_NE, counts_NF, pairs, pca_fit=pca_fit).set_index(["f1", "f2"])
    rg, bp = table.loc[("red", "green")], table.loc[("blue", "pink")]
    assert rg["status"] == bp["status"] == "ok"
    assert rg["M_full"] == 0.0 and rg["M_pca"] == 0.0
    assert rg["D_full"] > 0.5 and bp["D_full"] < 0.3 * rg["D_full"]
    assert bp["M_full"] > 0.3 and bp["M_pca"] > 0.3
    in_red = counts_NF[:, F["red"]] > 0
    in_green = counts_NF[:, F["green"]] > 0
    assert rg["n_f1_only"] == np.sum(in_red & ~in_green)
    assert rg["n_f2_only"] == np.sum(in_green & ~in_red)
    assert 1 <= rg["n_pca_components"] < emb_NE.shape[1]
    if pca_fit == "all":  # an orthogonal projection can only shrink the centroid distance
        assert rg["D_pca"] <= rg["D_full"] + 1e-12
    for skipped in [("red", "black"), ("circle", "square")]:
        row = table.loc[skipped]
        assert row["status"] == "too_few_images"
        assert row[["D_full", "M_full", "D_pca", "M_pca"]].isna().all()
    assert table.loc[("red", "black"), "n_f2_only"] == 1
    assert table.loc[("circle", "square"), "n_f1_only"] == 0
    # the space is the normalised embedding: rescaling images changes nothing
    scaled = separability_table(emb_NE * rng.uniform(0.5, 3, (len(emb_NE), 1)), counts_NF, pairs, pca_fit=pca_fit)
    pd.testing.assert_frame_equal(scaled.set_index(["f1", "f2"]), table, rtol=1e-9)


def test_separability_table_holdout_is_seeded():
    rng = np.random.default_rng(6)
    emb_NE, counts_NF = _synthetic_dataset(rng)
    pairs = feature_pairs()
    run = [separability_table(emb_NE, counts_NF, pairs, cv="holdout", rng=np.random.default_rng(s)) for s in (1, 1, 2)]
    pd.testing.assert_frame_equal(run[0], run[1])
    ok = run[0]["status"] == "ok"
    assert ok.sum() == 6  # the pairs among red, green, blue, pink
    assert not run[0].loc[ok, "M_full"].equals(run[2].loc[ok, "M_full"])
    with pytest.raises(ValueError, match="min_images"):
        separability_table(emb_NE, counts_NF, pairs, cv="holdout", min_images=2, test_fraction=0.2, rng=rng)


@pytest.mark.parametrize("chunk", [7, 50, 400])
def test_streamed_separability_is_the_in_memory_one(chunk):
    rng = np.random.default_rng(8)
    emb_NE, counts_NF = _synthetic_dataset(rng, n_images=150)
    emb_NE += 2.0  # a large common component, as real embeddings have
    pairs = feature_pairs(cross_type=True)

    def chunks():
        return (emb_NE[start : start + chunk] for start in range(0, len(emb_NE), chunk))

    held = separability_table(emb_NE, counts_NF, pairs)
    streamed = streamed_separability_table(chunks, counts_NF, pairs)
    ok = held["status"] == "ok"
    assert ok.sum() >= 6
    pd.testing.assert_frame_equal(
        streamed.drop(columns=["D_full", "D_pca"]), held.drop(columns=["D_full", "D_pca"]), check_exact=True
    )
    np.testing.assert_allclose(streamed[["D_full", "D_pca"]], held[["D_full", "D_pca"]], rtol=0, atol=1e-9)
    affinity_UF = rng.dirichlet(np.full(16, 0.3), size=50)
    pd.testing.assert_frame_equal(
        superposition_pair_table(affinity_UF, chunks, counts_NF, n_units=20),
        superposition_pair_table(affinity_UF, emb_NE, counts_NF, n_units=20),
        rtol=0,
        atol=1e-9,
    )
    holdout = dict(cv="holdout", rng=np.random.default_rng(1), n_units=20)
    pd.testing.assert_frame_equal(
        superposition_pair_table(affinity_UF, chunks, counts_NF, **holdout),
        superposition_pair_table(affinity_UF, emb_NE, counts_NF, **{**holdout, "rng": np.random.default_rng(1)}),
    )
    with pytest.raises(ValueError, match="over 149 images but counts_NF has 149 rows"):
        streamed_separability_table(chunks, counts_NF[:149], pairs)
    with pytest.raises(ValueError, match="hold 150 images but counts_NF has 151 rows"):
        streamed_separability_table(chunks, np.vstack([counts_NF, counts_NF[:1]]), pairs)


def test_pair_table_columns():
    rng = np.random.default_rng(7)
    emb_NE, counts_NF = _synthetic_dataset(rng)
    affinity_UF = rng.dirichlet(np.full(16, 0.3), size=50)
    table = superposition_pair_table(affinity_UF, emb_NE, counts_NF, n_units=20)
    assert len(table) == 35
    assert list(table.columns) == [
        "f1", "f2", "type", "n_units", "S_ratio", "S_joint", "n_f1_only", "n_f2_only", "status",
        "D_full", "M_full", "D_pca", "M_pca", "n_pca_components",
    ]  # fmt: skip
    assert (table["n_units"] == 20).all()
    assert table["S_ratio"].between(0, 1).all() and table["S_joint"].between(0, 0.5).all()


def test_correlation_monotone_relation():
    rng = np.random.default_rng(8)
    s = np.sort(rng.uniform(0, 1, 35))
    pairs = pd.DataFrame(
        {
            "S": s,
            "D": np.exp(-6 * s) + 0.01 * rng.standard_normal(35),  # decreasing, non-linear
            "M": s**3 + 0.005 * rng.standard_normal(35),  # increasing, non-linear
            "noise": rng.standard_normal(35),
        }
    )
    pairs.loc[3, "M"] = np.nan
    kwargs = dict(score_columns=["S"], separability_columns=["D", "M", "noise"], n_resamples=999)
    table = correlation_table(pairs, np.random.default_rng(0), **kwargs).set_index(["separability", "method"])
    assert set(table["score"]) == {"S"}
    assert table.loc[("D", "spearman"), "statistic"] < -0.9
    assert table.loc[("M", "spearman"), "statistic"] > 0.9
    assert table.loc[("M", "spearman"), "n_pairs"] == 34 and table.loc[("D", "pearson"), "n_pairs"] == 35
    # rank correlation sees a monotone relation fully, linear correlation only partly
    assert abs(table.loc[("D", "pearson"), "statistic"]) < abs(table.loc[("D", "spearman"), "statistic"])
    for sep in ["D", "M"]:
        for method in ["pearson", "spearman"]:
            row = table.loc[(sep, method)]
            assert row["p_value"] < 1e-6
            assert row["ci_low"] <= row["statistic"] <= row["ci_high"]
            assert np.sign(row["ci_low"]) == np.sign(row["ci_high"]) == np.sign(row["statistic"])
    noise = table.loc[("noise", "spearman")]
    assert noise["p_value"] > 0.01 and noise["ci_low"] < 0 < noise["ci_high"]
    again = correlation_table(pairs, np.random.default_rng(0), **kwargs).set_index(["separability", "method"])
    pd.testing.assert_frame_equal(again, table)


def test_correlation_degenerate_columns_give_nan():
    pairs = pd.DataFrame({"S": [0.0, 0.0, 0.0, 0.0], "D": [1.0, 2.0, 3.0, 4.0], "M": [1.0, np.nan, np.nan, 2.0]})
    table = correlation_table(pairs, np.random.default_rng(0), score_columns=["S"], separability_columns=["D", "M"])
    assert table["statistic"].isna().all() and table["ci_low"].isna().all()
    assert list(table["n_pairs"]) == [4, 4, 2, 2]
    with pytest.raises(ValueError, match="lacks columns"):
        correlation_table(pairs, np.random.default_rng(0))


def test_correlation_by_type_separates_pooled_from_within_type():
    """Two types that differ in both S and D: pooled, S and D correlate; within a type they do not."""
    rng = np.random.default_rng(9)
    n = 15
    pairs = pd.DataFrame(
        {
            "type": ["colour"] * n + ["shape"] * n,
            "S": np.concatenate([rng.uniform(0.0, 0.02, n), rng.uniform(0.04, 0.06, n)]),
            "D": np.concatenate([rng.uniform(0.6, 0.7, n), rng.uniform(0.1, 0.2, n)]),
        }
    )
    kwargs = dict(score_columns=["S"], separability_columns=["D"], n_resamples=999)
    table = correlation_by_type(pairs, np.random.default_rng(0), **kwargs)
    assert list(table.columns[:2]) == ["pair_type", "score"]
    assert list(table["pair_type"].unique()) == ["all", "colour", "shape"]
    rows = table.set_index(["pair_type", "method"])
    assert rows.loc[("all", "spearman"), "statistic"] < -0.6 and rows.loc[("all", "spearman"), "p_value"] < 1e-4
    assert rows.loc[("all", "spearman"), "n_pairs"] == 2 * n
    for kind in ("colour", "shape"):
        assert rows.loc[(kind, "spearman"), "n_pairs"] == n
        assert rows.loc[(kind, "spearman"), "p_value"] > 0.01
        assert rows.loc[(kind, "spearman"), "ci_low"] < 0 < rows.loc[(kind, "spearman"), "ci_high"]
    pooled = correlation_table(pairs, np.random.default_rng(0), **kwargs)
    pd.testing.assert_frame_equal(table[table["pair_type"] == "all"].drop(columns="pair_type"), pooled)
    with pytest.raises(ValueError, match="'type'"):
        correlation_by_type(pairs.drop(columns="type"), np.random.default_rng(0), **kwargs)
