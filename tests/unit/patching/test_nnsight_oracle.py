"""The batched patching engine against a second implementation in nnsight (methods.md Sec. 8).

The same denoising sweep, once through ``clipmech.patching.engine.sweep`` (hook sites, ROME's batched
layout) and once through ``tests/nnsight_sweep.py`` (nnsight traces on the open_clip module tree, one
per component), gives the same metrics on a float64 random tiny CLIP.
"""

import numpy as np
import open_clip
import pytest
import torch
from nnsight_sweep import nnsight_sweep
from toys import no_hooks, seeded_double, text_pairs, vision_pairs

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.models.towers import tower
from clipmech.patching import engine
from clipmech.patching.components import Component, components

ATOL = 1e-6
ARCHITECTURE = "clipmech-vit-tiny"


@pytest.fixture(scope="module")
def vit():
    return seeded_double(lambda: open_clip.create_model(ARCHITECTURE))


def _check_against_engine(model, tower_name, forward, metric, clean, corrupt, found):
    sets = [[c] for c in found]
    ours = engine.sweep(model, forward, metric, clean, corrupt, sets)
    theirs = nnsight_sweep(model, tower_name, metric, clean, corrupt, sets)
    assert no_hooks(model)
    assert not any("forward" in vars(m) for m in model.modules()), "nnsight wrapped a copy, not the model"
    np.testing.assert_allclose(ours.m_clean_Q, theirs.m_clean_Q, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.m_corrupt_Q, theirs.m_corrupt_Q, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.m_patched_QK, theirs.m_patched_QK, rtol=0, atol=ATOL)
    # The comparison has teeth: the patches move the metric by far more than the tolerance.
    assert np.abs(ours.m_patched_QK - ours.m_corrupt_Q[:, None]).max() > 1e3 * ATOL
    return ours


def test_vision_sweep_matches_nnsight(vit):
    torch.set_num_threads(1)
    clean, corrupt, metric = vision_pairs(vit, 3, seed=1)
    info = tower(vit, "visual")
    found = components(info, ["resid_pre", "attn_out", "mlp_out", "neuron"])[::7]
    assert {c.family for c in found} == {"resid_pre", "attn_out", "mlp_out", "neuron"}
    assert {c.layer for c in found} == {0, 1}
    _check_against_engine(vit, "visual", vit.encode_image, metric, clean, corrupt, found)


def test_text_sweep_matches_nnsight(vit):
    torch.set_num_threads(1)
    clean, corrupt, metric = text_pairs(vit, ARCHITECTURE, 2, seed=2)
    assert (clean.argmax(-1) == corrupt.argmax(-1)).all()
    n_positions = int(clean.argmax(-1).max()) + 1
    found = components(tower(vit, "text"), ["resid_pre", "mlp_out"], n_positions)
    result = _check_against_engine(vit, "text", vit.encode_text, metric, clean, corrupt, found)
    # A control: the start token is the same in both captions, so restoring it changes nothing.
    start = [k for k, c in enumerate(found) if c.position == 0 and c.family == "resid_pre" and c.layer == 0]
    np.testing.assert_allclose(result.m_patched_QK[:, start[0]], result.m_corrupt_Q, rtol=0, atol=1e-12)


def test_a_wrong_position_is_caught(vit):
    """The oracle tells components apart: the engine's token 3 is not nnsight's token 4."""
    torch.set_num_threads(1)
    clean, corrupt, metric = vision_pairs(vit, 3, seed=1)
    site = "visual.blocks.1.hook_resid_pre"
    ours = engine.sweep(vit, vit.encode_image, metric, clean, corrupt, [[Component("resid_pre", site, (3,), 1, 3)]])
    theirs = nnsight_sweep(vit, "visual", metric, clean, corrupt, [[Component("resid_pre", site, (4,), 1, 4)]])
    assert np.abs(ours.m_patched_QK - theirs.m_patched_QK).max() > 1e3 * ATOL
