"""Slow tier: SigLIP ViT-B-16 and SO400M-14 with random weights, loaded offline without their Hugging Face tokenizer.

The vision tower (a timm trunk, methods.md Sec. 6) needs no tokenizer files: ``offline_hub`` leaves the Hub
unreachable and its cache empty, as on a machine without network.
"""

import numpy as np
import pytest
import torch
from toys import no_hooks

from clipmech.hooks.sites import TRANSFORMER_HOOKS, hooked, resolve
from clipmech.models import loading
from clipmech.models.towers import tower
from clipmech.stores import activation_extraction, activations

pytestmark = pytest.mark.slow

#: architecture -> (blocks, width D, heads H, MLP width D_mlp, patch grid, patch stride, embedding width E)
ARCHITECTURES = {
    "ViT-B-16-SigLIP": (12, 768, 12, 3072, (14, 14), (16, 16), 768),
    "ViT-SO400M-14-SigLIP": (27, 1152, 16, 4304, (16, 16), (14, 14), 1152),
}
ATOL = 1e-5


def _spec(architecture):
    return loading.ModelSpec("siglip", architecture, None)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_vision_tower_sites_offline(architecture, offline_hub):
    n_layers, width, n_heads, d_mlp, grid, stride, embed_dim = ARCHITECTURES[architecture]
    model, preprocess = loading.load_model(_spec(architecture))
    info = tower(model)
    n_tokens = grid[0] * grid[1]  # no class token: SigLIP pools with attention (MAP head)
    assert (info.kind, info.n_layers, info.width, info.n_heads, info.d_head) == (
        "timm",
        n_layers,
        width,
        n_heads,
        width // n_heads,
    )
    assert info.d_mlp == d_mlp
    assert (info.grid, info.stride, info.n_prefix_tokens, info.n_tokens, info.image_size) == (
        grid,
        stride,
        0,
        n_tokens,
        (224, 224),
    )
    ends = (0, n_layers - 1)
    names = [f"visual.blocks.{layer}.{hook}" for layer in ends for hook in TRANSFORMER_HOOKS]
    assert {(resolve(model, name).tower, resolve(model, name).layer) for name in names} == {("visual", e) for e in ends}

    images_NHW3 = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    pixels = loading.preprocess_images(images_NHW3, preprocess)
    assert pixels.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        plain_NE = model.encode_image(pixels)
        with hooked(model, capture=names) as cache:
            embedding_NE = model.encode_image(pixels)
    assert no_hooks(model)
    assert embedding_NE.shape == (1, embed_dim) and torch.isfinite(embedding_NE).all()
    torch.testing.assert_close(embedding_NE, plain_NE, rtol=0, atol=1e-6)  # capturing changes nothing

    for layer in ends:

        def site(hook, layer=layer):
            return cache[f"visual.blocks.{layer}.{hook}"]

        assert site("attn.hook_z").shape == (1, n_tokens, n_heads, width // n_heads)
        assert site("attn.hook_result").shape == (1, n_tokens, n_heads, width)
        assert site("mlp.hook_post").shape == (1, n_tokens, d_mlp)
        for hook in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            assert site(hook).shape == (1, n_tokens, width), hook
        heads_NTD = site("attn.hook_result").sum(dim=2) + info.blocks[layer].attn.proj.bias
        torch.testing.assert_close(heads_NTD, site("hook_attn_out"), rtol=0, atol=ATOL)
        resid_mid = site("hook_resid_pre") + site("hook_attn_out")
        torch.testing.assert_close(resid_mid, site("hook_resid_mid"), rtol=0, atol=ATOL)
        resid_post = site("hook_resid_mid") + site("hook_mlp_out")
        torch.testing.assert_close(resid_post, site("hook_resid_post"), rtol=0, atol=ATOL)


def test_extract_activations_offline(tmp_path, tiny_dataset, offline_hub):
    """The activation store of the ViT-B-16 vision tower, without tokenizer files (no class token: mean and max)."""
    spec = _spec("ViT-B-16-SigLIP")
    with pytest.raises(FileNotFoundError, match="timm/ViT-B-16-SigLIP"):
        loading.load(spec)
    store = activation_extraction.extract(
        spec,
        tiny_dataset,
        tmp_path / "siglip.zarr",
        layers=[0, 11],
        reductions=("mean", "max"),
        save_tokens=False,
        batch_size=5,
        device="cpu",
        code="test-code",
    )
    ds = activations.open_store(store)
    assert ds["mean"].shape == ds["max"].shape == (10, 2, 768)
    assert np.isfinite(ds["mean"].values).all() and (ds["max"].values >= ds["mean"].values).all()
    np.testing.assert_allclose(np.linalg.norm(ds["embedding"].values, axis=1), 1.0, rtol=1e-5)
