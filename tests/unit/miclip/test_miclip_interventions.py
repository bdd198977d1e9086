"""Eq. 5 interventions (clipmech.miclip.interventions) and the planted unit that MiCLIP finds and steers."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest
import torch

from clipmech.data import shapes
from clipmech.hooks.sites import hooked
from clipmech.miclip import encoder, evaluation, interventions, units
from clipmech.models import zeroshot
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
    for copy_ in (interventions.IDENTITY, ([3, 7], "scale", 1.0), ([3, 7], "add", 0.0)):
        assert torch.equal(_captured(vit, pixels, interventions.neuron_copies([copy_], typical, -1)), clean)
    edited = _captured(vit, pixels, interventions.neuron_copies([([3, 7], "scale", 2.0)], typical, -1))
    others = np.setdiff1d(np.arange(clean.shape[-1]), [3, 7])
    assert torch.equal(edited[..., others], clean[..., others])
    torch.testing.assert_close(edited[..., [3, 7]], 2 * clean[..., [3, 7]])


def test_sae_edits_move_along_the_chosen_decoder_directions_and_are_exact_at_identity(vit):
    pixels = _pixels()
    clean = _captured(vit, pixels)
    sae = TopKSAE(64, 32, 4, seed=0).double()
    positions = np.arange(clean.shape[1])
    typical = np.ones(32)
    for copy_ in (interventions.IDENTITY, ([2, 5], "scale", 1.0), ([2, 5], "add", 0.0)):
        edit = interventions.sae_copies(sae, positions, [copy_], typical)
        assert torch.equal(_captured(vit, pixels, edit), clean)
    edited = _captured(vit, pixels, interventions.sae_copies(sae, positions, [([2, 5], "scale", 0.0)], typical))
    delta = (edited - clean).reshape(-1, 64)
    z = sae.encode(clean.reshape(-1, 64))
    expected = -(z[:, [2, 5]] @ sae.W_dec[:, [2, 5]].T)
    torch.testing.assert_close(delta, expected.detach())  # in the span of the chosen decoder directions only


# A block output (copies repeated after the block) and a site inside it (repeated at the block's input).
@pytest.mark.parametrize("site", [SITE, "visual.blocks.1.hook_mlp_out"])
def test_a_planted_unit_is_ranked_first_and_steers_its_concept(vit, site):
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
    W, _, _ = encoder.train_encoder(
        acts[:150],
        images[:150],
        images[:150, None],
        (acts[150:], images[150:], images[150:, None]),
        loss="input",
        seed=0,
        steps=300,
        batch_size=64,
        lr=0.02,
        temperature=0.1,
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
    copies = [interventions.IDENTITY, ([planted], "add", 1.0), ([planted], "add", -1.0)]
    edit = interventions.neuron_copies(copies, typical_site, -1)
    predicted = interventions.copy_predictions(
        model, pixels, texts, site=site, edit=edit, n_copies=3, batch_size=6, device="cpu"
    )[:, :, 0]
    before, raised, lowered = (interventions.concept_accuracy(predicted[:, k], 0) for k in range(3))
    assert 0 < before < 1 and raised == 1.0 and lowered == 0.0
    # the identity copy is the unedited model; each copy equals its own pass
    np.testing.assert_array_equal(
        predicted[:, 0], interventions.predictions(model, pixels, texts, batch_size=6, device="cpu")[:, 0]
    )
    for k, copy_ in enumerate(copies):
        alone = interventions.copy_predictions(
            model,
            pixels,
            texts,
            site=site,
            edit=interventions.neuron_copies([copy_], typical_site, -1),
            n_copies=1,
            batch_size=6,
            device="cpu",
        )
        np.testing.assert_array_equal(predicted[:, k], alone[:, 0, 0])


def test_copies_in_one_pass_equal_their_own_passes_at_the_site(vit):
    """K copies of each image, repeated at the site's block, carry exactly their own edit: the captured
    site and the image embedding of copy k match a pass with copy k alone (neurons and SAE latents)."""
    pixels = _pixels(4, seed=2)
    sae = TopKSAE(64, 32, 4, seed=1).double()
    positions = np.arange(1, 65)
    typical = np.linspace(0.5, 2.0, 64)
    copies = [interventions.IDENTITY, ([1, 9], "scale", 2.0), ([4], "add", -1.0), ([1, 9], "scale", 0.0)]
    shape = _captured(vit, pixels).shape
    for make in (
        lambda cs: interventions.neuron_copies(cs, typical, -1),
        lambda cs: interventions.sae_copies(sae, positions, cs, typical[:32]),
    ):
        module = vit.visual.transformer.resblocks[1]
        handle = module.register_forward_pre_hook(lambda _, args: (args[0].repeat_interleave(4, dim=0), *args[1:]))
        try:
            together = _captured(vit, pixels, make(copies)).reshape(shape[0], len(copies), *shape[1:])
        finally:
            handle.remove()
        for k, copy_ in enumerate(copies):
            torch.testing.assert_close(together[:, k], _captured(vit, pixels, make([copy_])), rtol=1e-12, atol=1e-12)


def test_intervention_table_shares_copies_and_each_row_is_its_own_pass(vit):
    """Methods that pick the same units share a copy; a row's accuracy before is the identity's pass and its
    accuracy after the pass of its own copy alone; splitting a concept's copies over passes of at most
    ``batch_size`` rows changes no number."""
    rng = np.random.default_rng(3)
    pixels = _pixels(5, seed=4)
    n_features = len(shapes.FEATURES)
    present = rng.random((5, n_features)) < 0.6
    present[:, 0] = False  # a concept no image has is skipped
    embed_dim = vit.encode_image(pixels[:1]).shape[-1]
    texts = {
        task: torch.randn(len(zeroshot.attribute_prompts(task)[0]), embed_dim, dtype=torch.float64)
        for task in zeroshot.ATTRIBUTE_TASKS
    }
    chosen = rng.integers(0, 64, size=(n_features, 2))
    sets = {
        ("miclip", 0): (chosen, None),
        ("act_values", 0): (chosen[:, ::-1], None),  # the same units in another order: one shared copy
        ("random", 0): (rng.integers(0, 64, size=(n_features, 2)), None),
    }
    typical = np.linspace(0.5, 2.0, 64)
    forms = {"scale": [2.0, 0.0], "add": [1.0]}
    kwargs = dict(model=vit, pixels_NCHW=pixels, images_NF=present, texts=texts, sets=sets, site=SITE, forms=forms)

    def make_edit(copies):
        return interventions.neuron_copies(copies, typical, -1)

    table = evaluation.intervention_table(**kwargs, make_edit=make_edit, batch_size=4, device="cpu")
    assert set(table["concept"]) == {shapes.FEATURES[f] for f in range(1, n_features) if present[:, f].any()}
    assert len(table) == len(set(table["concept"])) * len(sets) * 3
    wide = table.pivot_table(index=["concept", "intervention", "beta"], columns="method", values="delta_acc")
    np.testing.assert_array_equal(wide["miclip"], wide["act_values"])
    # split over passes of 1 row: the same table
    one_row = evaluation.intervention_table(**kwargs, make_edit=make_edit, batch_size=1, device="cpu")
    pd.testing.assert_frame_equal(table, one_row)
    row = table[(table["method"] == "random") & (table["intervention"] == "scale") & (table["beta"] == 0.0)].iloc[0]
    f = shapes.FEATURES.index(row["concept"])
    task, target = interventions.task_of(row["concept"])
    images = np.flatnonzero(present[:, f])
    for copy_, accuracy in (
        (interventions.IDENTITY, row["accuracy_before"]),
        ((sets["random", 0][0][f].tolist(), "scale", 0.0), row["accuracy_after"]),
    ):
        alone = interventions.copy_predictions(
            vit, pixels[images], texts, site=SITE, edit=make_edit([copy_]), n_copies=1, batch_size=4, device="cpu"
        )
        assert interventions.concept_accuracy(alone[:, 0, task], target) == accuracy


def test_single_label_images_are_those_whose_objects_all_carry_the_concept():
    objects = pd.DataFrame(
        {"image_id": [0, 1, 1, 3], "shape": ["circle", "circle", "square", "circle"],
         "colour": ["red", "red", "red", "blue"], "position": ["center", "top-left", "center", "center"]}
    )  # fmt: skip
    single = interventions.single_label_images(objects, 4)
    column = {name: single[:, shapes.FEATURES.index(name)].tolist() for name in ("circle", "red", "center", "blue")}
    assert column == {
        "circle": [True, False, False, True],  # image 1 also holds a square
        "red": [True, True, False, False],  # both objects of image 1 are red
        "center": [True, False, False, True],
        "blue": [False, False, False, True],
    }
    assert not single[2].any()  # no objects: no label


def test_delta_acc_of_a_planted_neuron_is_measured_on_single_object_images(vit, monkeypatch):
    """A zero-shot head reads one channel of the class token; MiCLIP's encoder maps that channel to the
    circle. The evaluation localises it for the circle and measures its Delta Acc on the circle's
    single-object images only (3 of the 7 images with a circle), where adding to it makes every
    prediction right and subtracting every prediction wrong."""
    model = copy.deepcopy(vit)
    with torch.no_grad():
        model.visual.proj.copy_(torch.eye(64, dtype=torch.float64))
        model.visual.ln_post.weight.fill_(1.0)
        model.visual.ln_post.bias.zero_()
    pixels = _pixels(8, seed=5)
    site_acts = units.site_activations(model, pixels, SITE, batch_size=8, device="cpu")
    typical = units.typical_activation(units.neuron_image_acts(site_acts, 1))
    planted = int(np.argmax(typical))  # a positive typical activation: adding raises the channel
    heads = {}
    for task in zeroshot.ATTRIBUTE_TASKS:
        head = torch.zeros(len(zeroshot.attribute_prompts(task)[0]), 64, dtype=torch.float64)
        head[0, planted], head[1, planted] = 1.0, -1.0  # class 0 (circle, ...) when the channel is positive
        heads[task] = head
    monkeypatch.setattr(evaluation, "attribute_prompt_embeddings", lambda *args: heads)
    # images 0, 1, 3: one circle; 2: one square; 4-7: a circle and a square
    objects = pd.DataFrame(
        {"image_id": [0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 7],
         "object_id": [1, 1, 1, 1, 1, 2, 1, 2, 1, 2, 1, 2],
         "shape": ["circle", "circle", "square", "circle"] + ["circle", "square"] * 4,
         "colour": ["red", "blue", "red", "green"] + ["red", "blue"] * 4,
         "position": ["center", "top-left", "center", "top-right"] + ["center", "top-left"] * 4}
    )  # fmt: skip
    rng = np.random.default_rng(0)
    e = 6
    concept_CE = _unit_rows(rng.standard_normal((len(shapes.FEATURES), e)))
    W = 0.01 * rng.standard_normal((e, 64))
    W[:, planted] = concept_CE[shapes.FEATURES.index("circle")]
    evaluate = functools.partial(
        evaluation.evaluate_unit_set,
        evaluation.neuron_set(units.neuron_image_acts(site_acts, 1), units.NeuronMaps(site_acts, 1, (8, 8)), -1),
        model=model,
        tokenizer=None,
        objects=objects,
        masks_NHW=np.zeros((8, 64, 64), dtype=np.uint8),
        site=SITE,
        encoders={f"{loss}/0": W for loss in ("both", "input", "output")},
        concept_data={
            "words": np.array(["w0", "w1"]),
            "concept_embeddings": concept_CE,
            "word_embeddings": _unit_rows(rng.standard_normal((2, e))),
        },
        reference_images_NE=_unit_rows(rng.standard_normal((8, e))),
        params={
            "seeds": [0],
            "tau": 1,
            "interventions": {"add": [50.0, -50.0]},
            "clip_dissect": {"top_k": 3, "a": 10.0, "lam": 1.0},
            "netdissect": {"quantile": 0.25, "resolution": 8},
            "batch_size": 16,
        },
        k_top=2,
        device="cpu",
    )
    results = evaluate(pixels_NCHW=pixels)
    located = results["localisation"].set_index(["method", "concept"])
    assert located.loc[("miclip", "circle"), "unit"] == planted
    rows = results["interventions"]
    circle = rows[(rows["method"] == "miclip") & (rows["concept"] == "circle")].set_index("beta")
    assert (circle["n_images"] == 3).all()  # images 0, 1, 3; not the 4 two-object scenes
    assert circle.loc[50.0, "accuracy_after"] == 1.0 and circle.loc[-50.0, "accuracy_after"] == 0.0
    before = interventions.predictions(model, pixels[[0, 1, 3]], heads, batch_size=8, device="cpu")
    assert circle["accuracy_before"].iloc[0] == interventions.concept_accuracy(before[:, 1], 0)  # shape task
    counts = rows.drop_duplicates("concept").set_index("concept")["n_images"].to_dict()
    assert counts == {"circle": 3, "square": 1, "red": 2, "blue": 1, "green": 1, "top-left": 1, "top-right": 1,
                      "center": 2}  # fmt: skip
    # Pixels read on demand, two images at a time: the same interventions.
    monkeypatch.setattr(evaluation, "PIXEL_CHUNK", 2)
    read = []
    chunked = evaluate(pixels_NCHW=lambda images: read.append(len(images)) or pixels[images])
    pd.testing.assert_frame_equal(chunked["interventions"], rows)
    assert max(read) == 2 and sum(read) == sum(counts.values())


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)
