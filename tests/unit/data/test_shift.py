"""Shapes splits with known concept shares and distribution-shift scores (clipmech.data.shift)."""

from __future__ import annotations

import numpy as np
import pytest

from clipmech.data import datasets, shapes, shift
from clipmech.decomposition import monitoring


@pytest.mark.parametrize("distinct", [True, False])
def test_sample_objects_with_honours_presence(distinct):
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 5))  # 2 of 6 colours banned leaves 4 distinct ones
        want = {"red": bool(trial % 2), "square": bool(trial % 3 == 0), "blue": False}
        objects = shapes.sample_objects_with(rng, n, 96, want, distinct_attributes=distinct)
        colours, kinds = [o["colour"] for o in objects], [o["shape"] for o in objects]
        assert ("red" in colours) == want["red"] and ("square" in kinds) == want["square"] and "blue" not in colours
        assert len({o["position"] for o in objects}) == n
        if distinct:
            assert len(set(colours)) == n and len(set(kinds)) == n
    with pytest.raises(ValueError, match="unknown features"):
        shapes.sample_objects_with(rng, 2, 96, {"purple": True})
    with pytest.raises(ValueError, match="must be present"):
        shapes.sample_objects_with(rng, 1, 96, {"red": True, "blue": True})


def test_splits_have_exact_shares_and_load_as_a_dataset(tmp_path):
    spec = shift.ShiftSpec(
        concepts=("red", "circle"),
        shares=((0.2, 1.0), (0.6, 0.0), (1.0, 0.4)),
        n_per_split=5,
        image_size=48,
        max_objects=3,
        seed=1,
    )
    images, masks, objects = shift.synthesize(spec)
    assert images.shape == (15, 48, 48, 3) and masks.shape == (15, 48, 48)
    present = shift.presence(objects, spec.concepts, 15)
    np.testing.assert_array_equal(present.reshape(3, 5, 2).sum(axis=1), [[1, 5], [3, 0], [5, 2]])
    assert (objects["split"] == objects["image_id"] // 5).all()
    shift.build(tmp_path / "splits", spec, chunk_images=4)  # 15 images: table chunks of 4, 4, 4 and 3
    for name, array in (("images.npy", images), ("masks.npy", masks)):
        np.save(tmp_path / name, array)
        assert (tmp_path / "splits" / name).read_bytes() == (tmp_path / name).read_bytes()
    assert (tmp_path / "splits" / "objects.tsv").read_text() == objects.to_csv(sep="\t", index=False)
    data = datasets.load(tmp_path / "splits")
    assert (
        data.n_images == 15
        and data.spec["kind"] == "shapes"
        and data.spec["sha256"] == datasets.dataset_hash(tmp_path / "splits")
    )
    assert shift.load_spec(tmp_path / "splits") == spec
    again = shift.synthesize(spec)
    np.testing.assert_array_equal(again[0], images)  # seeded
    with pytest.raises(ValueError, match="unknown concepts"):
        shift.ShiftSpec(concepts=("purple",), shares=((0.1,), (0.2,)))
    with pytest.raises(ValueError, match="shares"):
        shift.ShiftSpec(concepts=("red",), shares=((0.1,), (1.2,)))


def test_concept_scores_and_correlations():
    rng = np.random.default_rng(0)
    s_NHC = rng.standard_normal((6, 2, 3))
    u_HCE = rng.standard_normal((2, 3, 4))
    y_NE = rng.standard_normal((6, 4))
    scores = monitoring.concept_scores(s_NHC, u_HCE, y_NE, [0, 1], [2, 0])
    explicit = np.linalg.norm(s_NHC[:, 0, 2, None] * u_HCE[0, 2] + s_NHC[:, 1, 0, None] * u_HCE[1, 0], axis=1)
    np.testing.assert_allclose(scores, explicit / np.linalg.norm(y_NE, axis=1), rtol=1e-12)

    spec = shift.ShiftSpec(concepts=("red",), shares=((0.25,), (0.75,)), n_per_split=4)
    present = np.array([[1, 0, 0, 0, 1, 1, 1, 0]], dtype=bool).T
    score = present[:, 0] * 2.0 + rng.normal(0, 0.1, 8)[:, None][:, 0]
    splits, corr = monitoring.shift_tables(spec, score[:, None], present)
    assert splits["measured_share"].tolist() == [0.25, 0.75]
    assert splits["mean_score"].iloc[1] > splits["mean_score"].iloc[0]
    assert corr.loc[0, "point_biserial_r"] > 0.95 and corr.loc[0, "split_pearson_r"] == pytest.approx(1.0)
