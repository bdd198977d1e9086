"""The MiCLIP evaluation's unit x concept scores, descriptions and localisation (clipmech.miclip.evaluation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from clipmech.analyses import dead
from clipmech.data import shapes
from clipmech.miclip import evaluation, tables, units
from clipmech.sae.model import TopKSAE

DEAD = 3


def _normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dead_latent_scores(tau, scratch):
    """Scores of every method for the latents of an SAE whose latent DEAD never fires on the probe."""
    rng = np.random.default_rng(0)
    n, t, d, n_latents, e = 24, 5, 8, 6, 4
    sae = TopKSAE(d, n_latents, 2, seed=0).double()
    with torch.no_grad():
        sae.W_enc[DEAD] = 0.0
        sae.b_enc[DEAD] = -100.0
    unit_set = evaluation.sae_set(
        sae, np.arange(1, t), 1, evaluation.array_batches(rng.standard_normal((n, t, d)), 7), (2, 2), scratch=scratch
    )
    present = rng.random((n, len(shapes.FEATURES))) < 0.5
    scores = evaluation.method_scores(
        acts_NU=unit_set.acts_NU,
        embed=unit_set.embed,
        encoders={f"{loss}/0": rng.standard_normal((e, d)) for loss in tables.MICLIP_LOSS.values()},
        seeds=[0],
        concept_CE=_normed(rng.standard_normal((len(shapes.FEATURES), e))),
        word_AE=_normed(rng.standard_normal((10, e))),
        reference_images_NE=_normed(rng.standard_normal((n, e))),
        present_NF=present,
        iou_UF=None,
        clip_dissect={"top_k": 5, "a": 10.0, "lam": 1.0},
        tau=tau,
    )
    return unit_set, scores


def test_a_dead_latent_gets_no_description_and_no_localisation(tmp_path):
    unit_set, scores = _dead_latent_scores(tau=2, scratch=tmp_path / "a")
    dead_U = dead.dead_units(unit_set.acts_NU[:])
    assert np.flatnonzero(dead_U).tolist() == [DEAD] and (unit_set.acts_NU[:, DEAD] == 0).all()
    descriptions = evaluation.description_table(scores, 2, [f"w{i}" for i in range(10)], dead_U)
    assert DEAD not in set(descriptions["unit"]) and set(descriptions["unit"]) == set(range(6)) - {DEAD}
    for (method, seed), (index_CK, _) in evaluation.unit_sets(scores, 2, dead_U).items():
        assert DEAD not in index_CK and index_CK.shape == (len(shapes.FEATURES), 2), (method, seed)
    # with more units asked for than are alive, the localisation stops at the live ones
    _, scores = _dead_latent_scores(tau=6, scratch=tmp_path / "b")
    for index_CK, _ in evaluation.unit_sets(scores, 6, dead_U).values():
        assert index_CK.shape == (len(shapes.FEATURES), 5) and DEAD not in index_CK


def test_without_dead_units_every_unit_is_described_and_drawn_as_before(tmp_path):
    _, scores = _dead_latent_scores(tau=2, scratch=tmp_path)
    alive = np.zeros(6, dtype=bool)
    descriptions = evaluation.description_table(scores, 2, [f"w{i}" for i in range(10)], alive)
    assert set(descriptions["unit"]) == set(range(6)) and descriptions.index.equals(pd.RangeIndex(len(descriptions)))
    random_CK = evaluation.unit_sets(scores, 2, alive)["random", 0][0]
    np.testing.assert_array_equal(random_CK, units.random_units(6, len(shapes.FEATURES), 2, 0))


def test_an_sae_set_from_top_k_codes_equals_the_dense_latents(tmp_path):
    """The SAE unit set holds its latents as top-k codes, read a batch of images at a time; its image-level
    activations and maps equal those of the dense latents of the whole array exactly, its typical firing values
    to float64 rounding (methods.md Sec. 9.3)."""
    rng = np.random.default_rng(5)
    n, t, d, n_latents = 30, 5, 8, 24  # 1 class token + 2 x 2 patches
    sae = TopKSAE(d, n_latents, 3, seed=2).eval()
    site_acts = rng.standard_normal((n, t, d)).astype(np.float32)
    positions = np.arange(t)
    unit_set = evaluation.sae_set(
        sae,
        positions,
        1,
        evaluation.array_batches(site_acts, 7),
        (2, 2),
        batch_images=3,
        scratch=tmp_path,
        unit_chunk=5,
    )
    with torch.inference_mode():
        z_NTn = sae.encode(torch.from_numpy(site_acts.reshape(-1, d))).numpy().reshape(n, t, n_latents)
    dense_acts = z_NTn[:, 1:].max(axis=1).astype(np.float64)
    np.testing.assert_array_equal(unit_set.acts_NU[:], dense_acts)
    np.testing.assert_array_equal(unit_set.maps[:, :], z_NTn[:, 1:].transpose(0, 2, 1).reshape(n, n_latents, 2, 2))
    top_n = np.argmax(dense_acts, axis=0)  # the top 1 % of 30 images: the first image of highest activation
    firing = z_NTn[top_n, 1:, np.arange(n_latents)].astype(np.float64)  # (n, patches)
    count = (firing != 0).sum(axis=1)
    typical = np.divide(firing.sum(axis=1), count, out=np.zeros(n_latents), where=count > 0)
    np.testing.assert_allclose(unit_set.embed.keywords["typical_U"], typical, rtol=1e-12)
    assert (count > 0).sum() > n_latents // 2


def test_the_scores_of_a_spilled_sae_set_read_in_blocks_equal_those_of_its_activations_in_memory(tmp_path):
    """An SAE set's image-level activations are spilled to disk, float32, and read 5 of 24 latents at a time:
    every method's scores equal those of the same activations held whole in memory as float64 (soft-WPMI to
    float64 rounding, :func:`clipmech.miclip.baselines.soft_wpmi`)."""
    rng = np.random.default_rng(8)
    n, t, d, n_latents, e = 40, 5, 8, 24, 4
    sae = TopKSAE(d, n_latents, 3, seed=1).eval()
    site_acts = rng.standard_normal((n, t, d)).astype(np.float32)
    unit_set = evaluation.sae_set(
        sae, np.arange(t), 1, evaluation.array_batches(site_acts, 9), scratch=tmp_path, unit_chunk=5
    )
    assert unit_set.acts_NU.dtype == np.float32 and unit_set.acts_NU.shape == (n, n_latents)
    inputs = {
        "embed": unit_set.embed,
        "encoders": {f"{loss}/0": rng.standard_normal((e, d)) for loss in tables.MICLIP_LOSS.values()},
        "seeds": [0],
        "concept_CE": _normed(rng.standard_normal((len(shapes.FEATURES), e))),
        "word_AE": _normed(rng.standard_normal((10, e))),
        "reference_images_NE": _normed(rng.standard_normal((n, e))),
        "present_NF": rng.random((n, len(shapes.FEATURES))) < 0.5,
        "iou_UF": None,
        "clip_dissect": {"top_k": 6, "a": 10.0, "lam": 1.0},
        "tau": 3,
    }
    blocks = evaluation.method_scores(acts_NU=unit_set.acts_NU, unit_chunk=5, **inputs)
    whole = evaluation.method_scores(acts_NU=unit_set.acts_NU[:].astype(np.float64), unit_chunk=n_latents, **inputs)
    assert blocks.keys() == whole.keys()
    for key in blocks:
        np.testing.assert_allclose(blocks[key]["shapes"], whole[key]["shapes"], rtol=1e-12, err_msg=str(key))
        if whole[key]["words"] is not None:
            np.testing.assert_array_equal(blocks[key]["words"][0], whole[key]["words"][0])
    assert np.isfinite(whole["act_values", 0]["shapes"]).all()
