"""Eq. 5 interventions (clipmech.miclip.interventions) and the planted unit that MiCLIP finds and steers."""

from __future__ import annotations

import copy

import numpy as np
import torch

from clipmech.hooks.sites import hooked
from clipmech.miclip import encoder, interventions, units
from clipmech.sae.model import TopKSAE

SITE = "visual.blocks.1.hook_resid_post"


def _pixels(n=6, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _captured(model, pixels, edit=None):
    with torch.inference_mode(), hooked(model, capture=[SITE], edit={SITE: edit} if edit else {}) as cache:
        model.encode_image(pixels)
        return cache[SITE].clone()


def test_neuron_edits_touch_only_the_chosen_channels_and_are_exact_at_identity(vit):
    pixels = _pixels()
    clean = _captured(vit, pixels)
    typical = np.linspace(-1, 1, clean.shape[-1])
    for form, neutral in (("scale", 1.0), ("add", 0.0)):
        assert torch.equal(_captured(vit, pixels, interventions.neuron_edit([3, 7], form, neutral, typical, -1)), clean)
    edited = _captured(vit, pixels, interventions.neuron_edit([3, 7], "scale", 2.0, typical, -1))
    others = np.setdiff1d(np.arange(clean.shape[-1]), [3, 7])
    assert torch.equal(edited[..., others], clean[..., others])
    torch.testing.assert_close(edited[..., [3, 7]], 2 * clean[..., [3, 7]])


def test_sae_edits_move_along_the_chosen_decoder_directions_and_are_exact_at_identity(vit):
    pixels = _pixels()
    clean = _captured(vit, pixels)
    sae = TopKSAE(64, 32, 4, seed=0).double()
    positions = np.arange(clean.shape[1])
    typical = np.ones(32)
    for form, neutral in (("scale", 1.0), ("add", 0.0)):
        edit = interventions.sae_edit(sae, positions, [2, 5], form, neutral, typical)
        assert torch.equal(_captured(vit, pixels, edit), clean)
    edited = _captured(vit, pixels, interventions.sae_edit(sae, positions, [2, 5], "scale", 0.0, typical))
    delta = (edited - clean).reshape(-1, 64)
    z = sae.encode(clean.reshape(-1, 64))
    expected = -(z[:, [2, 5]] @ sae.W_dec[:, [2, 5]].T)
    torch.testing.assert_close(delta, expected.detach())  # in the span of the chosen decoder directions only


def test_a_planted_unit_is_ranked_first_and_steers_its_concept(vit):
    """Neuron 5 carries the concept: the reference image embedding holds the concept direction exactly when
    the neuron fires. MiCLIP ranks it first; adding to it raises the accuracy of a zero-shot head that
    reads it, subtracting lowers it."""
    rng = np.random.default_rng(0)
    n, d, e, planted = 200, 8, 6, 5
    present = rng.random(n) < 0.5
    acts = 0.3 * rng.standard_normal((n, d))
    acts[:, planted] += 2.0 * present
    concept_dir = np.eye(e)[0]
    images = 0.3 * rng.standard_normal((n, e)) + np.outer(present, concept_dir)
    W, _ = encoder.train_encoder(
        acts, images, images[:, None], loss="input", seed=0, steps=300, batch_size=64, lr=0.02, temperature=0.1
    )
    typical = units.typical_activation(acts)
    scores = units.cosine(units.neuron_embeddings(W, typical), concept_dir[None])
    index, _ = units.localise(scores, 3)
    assert index[0, 0] == planted

    model = copy.deepcopy(vit)
    with torch.no_grad():
        model.visual.proj.copy_(torch.eye(64, dtype=torch.float64))
        model.visual.ln_post.weight.fill_(1.0)
        model.visual.ln_post.bias.zero_()
    # the head reads channel 5 of the class token: prompt 0 = +e_5, prompt 1 = -e_5
    head = torch.zeros(2, 64, dtype=torch.float64)
    head[0, planted], head[1, planted] = 1.0, -1.0
    texts = {task: head for task in ("colour", "shape", "position")}
    pixels = _pixels(12, seed=1)
    typical_site = np.full(64, 50.0)
    before = interventions.concept_accuracy(
        interventions.predictions(model, pixels, texts, batch_size=6, device="cpu")[:, 0], 0
    )
    accuracy = {}
    for beta in (1.0, -1.0):
        edit = {SITE: interventions.neuron_edit([planted], "add", beta, typical_site, -1)}
        predicted = interventions.predictions(model, pixels, texts, batch_size=6, device="cpu", edit=edit)
        accuracy[beta] = interventions.concept_accuracy(predicted[:, 0], 0)
    assert 0 < before < 1 and accuracy[1.0] == 1.0 and accuracy[-1.0] == 0.0
