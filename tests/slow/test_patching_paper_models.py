"""Slow tier: the patching engine on the causal-tracing paper's architectures (CLIP ViT-B-32, SigLIP SO400M) with
random weights, both towers: whole-layer restores give R = 1, batched sweeps equal the one-forward loop, and the
embedding corruptions run through open_clip's and timm's embedding modules."""

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from clipmech.models.towers import tower
from clipmech.patching import components, corruptions, engine, measures

pytestmark = pytest.mark.slow


def _metric(e_dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    correct, foil = F.normalize(torch.randn(2, e_dim, generator=generator), dim=-1)

    def metric(out_BE, pairs_B):
        out_BE = F.normalize(out_BE, dim=-1)
        return 100.0 * (out_BE @ correct - out_BE @ foil)

    return metric


@pytest.mark.parametrize("architecture", ["ViT-B-32", "ViT-SO400M-14-SigLIP"])
def test_engine_on_paper_architectures(architecture):
    torch.manual_seed(0)
    model = open_clip.create_model(architecture, pretrained=None).eval()
    generator = torch.Generator().manual_seed(1)
    for tower_name in ("visual", "text"):
        info = tower(model, tower_name)
        if tower_name == "visual":
            clean = torch.randn(1, 3, *info.image_size, generator=generator)
            corrupt = torch.randn(1, 3, *info.image_size, generator=generator)
            forward = model.encode_image
        else:
            # the same caption length: the text tower pools the end-of-text token (CLIP) or the last token (SigLIP)
            clean, corrupt = torch.randint(1, 1000, (2, 1, info.n_tokens), generator=generator)
            end = corruptions.embedding_module(model, "text").num_embeddings - 1  # CLIP: the end-of-text id
            clean[:, 10], corrupt[:, 10] = end, end
            forward = model.encode_text
        with torch.inference_mode():
            metric = _metric(forward(clean).shape[-1])
        layers = [0, info.n_layers // 2, info.n_layers - 1]
        head = components.components(info, ["head"])[-1]
        sets = [[components.layer_component(info, layer)] for layer in layers] + [[head], []]
        result = engine.sweep(model, forward, metric, clean, corrupt, sets, batch_size=8)
        r_K = measures.recovery(result)[0]
        np.testing.assert_allclose(r_K[: len(layers)], 1.0, atol=1e-3)
        assert abs(r_K[-1]) < 1e-4 and np.isfinite(r_K).all()  # the empty set: the corrupted run, in another row
        loop = engine.loop_sweep(model, forward, metric, clean, corrupt, sets[-2:])
        np.testing.assert_allclose(loop.m_patched_QK, result.m_patched_QK[:, -2:], atol=1e-3)
    visual = tower(model, "visual")
    image = torch.randn(1, 3, *visual.image_size, generator=generator)
    with torch.inference_mode():
        metric = _metric(model.encode_image(image).shape[-1])
    zero = corruptions.EmbeddingCorruption(model, "visual", "zero")
    sets = [[components.layer_component(visual, 1)]]
    result = engine.sweep(model, model.encode_image, metric, image, image, sets, batch_size=3, corruption=zero)
    assert result.m_clean_Q[0] != result.m_corrupt_Q[0]
    np.testing.assert_allclose(measures.recovery(result), 1.0, atol=1e-3)
