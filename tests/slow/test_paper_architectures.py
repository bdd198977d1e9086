"""Slow tier: the papers' architectures (RN50x16, ViT-B-32, RN50, ViT-L-14) with random weights."""

import numpy as np
import open_clip
import pytest
import torch
from toys import no_hooks, relative_error, torch_attnpool_attention

from clipmech.analyses.gradcam import gradcam
from clipmech.decomposition import pool
from clipmech.hooks.attnpool import capture_attnpool
from clipmech.hooks.sites import hooked
from clipmech.models.towers import tower

pytestmark = pytest.mark.slow


def test_rn50x16_random_weights_float64_reconstruction_and_alpha():
    torch.manual_seed(0)
    model = open_clip.create_model("RN50x16", pretrained=None).double().eval()
    attnpool = model.visual.attnpool
    assert (attnpool.num_heads, attnpool.c_proj.in_features, attnpool.c_proj.out_features) == (48, 3072, 768)
    with torch.no_grad():
        # random-weight features are ~1e-3, which leaves the attention uniform to 1%; sharpen it
        # so that token order, scaling and head split are actually exercised
        attnpool.q_proj.weight.mul_(3000.0)
    images = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cap = capture_attnpool(model, images)
    assert cap.x_NTC.shape == (2, 145, 3072) and cap.alpha_NHT.shape == (2, 48, 145)

    weights = pool.attnpool_weights(attnpool)
    u_HCE = pool.neuron_head_directions(weights)
    s_NHC = pool.pair_scalars(cap.x_NTC.numpy(), cap.alpha_NHT.numpy())
    y_hat = pool.reconstruct_output(s_NHC, u_HCE, pool.output_bias(weights))
    err = relative_error(y_hat, cap.y_NE.numpy())
    assert err < 1e-5, err

    x_TNC = cap.x_NTC.transpose(0, 1)
    w_NHTT = torch_attnpool_attention(attnpool, x_TNC)
    np.testing.assert_allclose(cap.alpha_NHT.numpy(), w_NHTT[:, :, 0, :].numpy(), rtol=0, atol=1e-12)
    assert cap.alpha_NHT.max(dim=-1).values.mean() > 3.0 / 145


@pytest.mark.parametrize("architecture, grid", [("ViT-B-32", 7), ("RN50", 7)])
def test_paper_scale_architectures(architecture, grid):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model(architecture, pretrained=None).eval()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    text = rng.standard_normal((2, model.text_projection.shape[1])).astype(np.float32)
    result = gradcam(model, images, text)
    assert result.cam_NPhw.shape == (1, 2, grid, grid) and result.maps_NPHW.shape == (1, 2, 224, 224)
    assert result.maps_NPHW.dtype == np.float32 and np.isfinite(result.maps_NPHW).all()
    assert np.abs(result.alpha_NPC).max() > 0
    if architecture.startswith("ViT"):
        assert result.layer == "visual.blocks.11.hook_resid_pre"
        with pytest.raises(ValueError, match="visual.blocks.11.hook_mlp_out"):
            gradcam(model, images, text, target="visual.blocks.-1.hook_mlp_out")
    assert no_hooks(model)


def test_vit_l_14_hook_shapes_random_weights():
    """The paper model: 24 blocks x 1024 units per token, 257 tokens (class + 16 x 16 patches)."""
    model = open_clip.create_model("ViT-L-14", pretrained=None).eval()
    names = [f"visual.blocks.{layer}.hook_mlp_out" for layer in range(24)]
    with torch.inference_mode(), hooked(model, capture=names) as cache:
        model.encode_image(torch.randn(1, 3, 224, 224))
        acts = torch.stack([cache[name] for name in names], dim=1)
    assert acts.shape == (1, 24, 257, 1024)
    assert tower(model).n_tokens == 257
