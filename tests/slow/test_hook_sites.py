"""Slow tier: hook sites and the tower adapter (methods.md Sec. 6) on paper architectures and SigLIP, random weights."""

import open_clip
import pytest
import torch
from toys import attention_outputs, seeded_double

from clipmech.hooks.sites import hooked
from clipmech.models.towers import tower

pytestmark = pytest.mark.slow

ATOL = 1e-6


def test_siglip_head_results_sum_to_attention_output():
    model = seeded_double(lambda: open_clip.create_model("ViT-B-16-SigLIP", pretrained=None))
    info = tower(model)
    outputs, handles = attention_outputs(info)
    names = ["visual.blocks.0.attn.hook_result", "visual.blocks.11.attn.hook_result"]
    try:
        with torch.no_grad(), hooked(model, capture=names) as cache:
            model.encode_image(torch.randn(1, 3, 224, 224, dtype=torch.float64))
    finally:
        for handle in handles:
            handle.remove()
    for name, layer in zip(names, (0, 11)):
        summed = cache[name].sum(dim=2) + info.blocks[layer].attn.proj.bias
        torch.testing.assert_close(summed, outputs[layer], rtol=0, atol=ATOL)


def test_siglip_trunk():
    model = open_clip.create_model("ViT-B-16-SigLIP", pretrained=None)
    info = tower(model)
    assert (info.kind, info.n_layers, info.width, info.n_heads) == ("timm", 12, 768, 12)
    assert (info.grid, info.n_prefix_tokens, info.n_tokens, info.stride) == ((14, 14), 0, 196, (16, 16))
    text = tower(model, "text")
    assert (text.kind, text.n_layers, text.width, text.n_tokens) == ("text", 12, 768, 64)


def test_rn50x16():
    model = open_clip.create_model("RN50x16", pretrained=None)
    info = tower(model)
    assert (info.kind, info.width, info.n_heads, info.grid, info.n_tokens, info.image_size) == (
        "resnet",
        3072,
        48,
        (12, 12),
        145,
        (384, 384),
    )
    assert tower(model, "text").n_tokens == 77


def test_vit_l_14():
    model = open_clip.create_model("ViT-L-14", pretrained=None)
    info = tower(model)
    assert (info.kind, info.n_layers, info.width, info.n_heads, info.d_head) == ("vit", 24, 1024, 16, 64)
    assert (info.grid, info.n_tokens, info.stride, info.image_size) == ((16, 16), 257, (14, 14), (224, 224))
    text = tower(model, "text")
    assert (text.n_layers, text.width, text.n_heads, text.n_tokens) == (12, 768, 12, 77)
