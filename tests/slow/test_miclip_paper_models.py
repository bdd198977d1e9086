"""Slow tier: MiCLIP on its paper's architectures (CLIP ViT-B-16 after layer 10, RN50's last stage) with random
weights: site activations, a few encoder steps, unit embeddings and one intervention of each form, which is
exact at its identity and changes the embedding otherwise."""

import numpy as np
import open_clip
import pytest
import torch

from clipmech.hooks.sites import hooked
from clipmech.miclip import encoder, interventions, units
from clipmech.models.towers import tower

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("architecture", "site", "axis"),
    [("ViT-B-16", "visual.blocks.10.hook_resid_pre", -1), ("RN50", "visual.blocks.3.hook_resid_post", 1)],
)
def test_miclip_on_paper_architectures(architecture, site, axis):
    torch.manual_seed(0)
    model = open_clip.create_model(architecture, pretrained=None).eval()
    info = tower(model, "visual")
    pixels = torch.randn(4, 3, *info.image_size, generator=torch.Generator().manual_seed(1))
    site_acts = units.site_activations(model, pixels, site, batch_size=2, device="cpu")
    acts_NU = units.neuron_image_acts(site_acts, info.n_prefix_tokens)
    with torch.inference_mode():
        images = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
    W, losses, heldout = encoder.train_encoder(
        acts_NU[:3],
        images[:3],
        images[:3, None],
        (acts_NU[3:], images[3:], images[3:, None]),
        loss="both",
        seed=0,
        steps=3,
        batch_size=3,
        lr=1e-3,
        temperature=0.07,
    )
    assert W.shape == (images.shape[1], acts_NU.shape[1]) and np.isfinite(losses).all() and np.isfinite(heldout).all()
    typical = units.typical_activation(acts_NU)
    index, _ = units.localise(units.cosine(units.neuron_embeddings(W, typical), images[:1]), 5)
    chosen = index[0]
    with torch.inference_mode():
        clean = model.encode_image(pixels)
        for form, neutral, beta in (("scale", 1.0, 0.0), ("add", 0.0, -1.0)):
            with hooked(model, edit={site: interventions.neuron_copies([(chosen, form, neutral)], typical, axis)}):
                assert torch.equal(model.encode_image(pixels), clean)
            with hooked(model, edit={site: interventions.neuron_copies([(chosen, form, beta)], typical, axis)}):
                assert not torch.equal(model.encode_image(pixels), clean)
    # copies repeated at the site's block: the identity copy predicts as the unedited model
    generator = torch.Generator().manual_seed(2)
    texts = {task: torch.randn(3, images.shape[1], generator=generator) for task in ("colour", "shape", "position")}
    copies = [interventions.IDENTITY, (chosen, "scale", 0.0), (chosen, "add", 1.0)]
    predicted = interventions.copy_predictions(
        model,
        pixels,
        texts,
        site=site,
        edit=interventions.neuron_copies(copies, typical, axis),
        n_copies=3,
        batch_size=6,
        device="cpu",
    )
    assert predicted.shape == (4, 3, 3)
    np.testing.assert_array_equal(
        predicted[:, 0], interventions.predictions(model, pixels, texts, batch_size=4, device="cpu")
    )
