"""Slow tier: SigLIP ViT-B-16 and SO400M-14 with random weights, offline, both towers (methods.md Sec. 6).

``offline_hub`` leaves the Hub unreachable and its cache empty, as on a machine without network. The vision
tower (a timm trunk) needs no tokenizer files; the text tower's tokenizer is a stand-in of SigLIP's Hugging
Face tokenizer written into that cache (``toys.cache_siglip_tokenizer``), fitted to a few captions.
"""

import numpy as np
import pytest
import torch
from toys import cache_siglip_tokenizer, no_hooks

from clipmech.data import datasets
from clipmech.hooks.sites import TRANSFORMER_HOOKS, hooked, resolve
from clipmech.models import loading
from clipmech.models.towers import tower
from clipmech.patching import concepts
from clipmech.stores import activation_extraction, activations

pytestmark = pytest.mark.slow

#: architecture -> (blocks, width D, heads H, MLP width D_mlp, patch grid, patch stride, embedding width E)
ARCHITECTURES = {
    "ViT-B-16-SigLIP": (12, 768, 12, 3072, (14, 14), (16, 16), 768),
    "ViT-SO400M-14-SigLIP": (27, 1152, 16, 4304, (16, 16), (14, 14), 1152),
}
#: architecture -> (text blocks, width D, heads H, MLP width D_mlp, context length)
TEXT_ARCHITECTURES = {
    "ViT-B-16-SigLIP": (12, 768, 12, 3072, 64),
    "ViT-SO400M-14-SigLIP": (27, 1152, 16, 4304, 16),
}
ATOL = 1e-5
#: Shapes-style captions; the second is longer than SO400M's 16-token context.
CAPTIONS = [
    "a red circle in the center",
    "a blue square at the top left and a green triangle at the bottom right and a yellow hexagon in the center",
    "a photo of a shape",
]
EOS = PAD = 1  # SigLIP's T5 vocabulary: </s>, which also pads


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


@pytest.mark.parametrize("architecture", TEXT_ARCHITECTURES)
def test_text_tower_sites_offline(architecture, offline_hub):
    n_layers, width, n_heads, d_mlp, context = TEXT_ARCHITECTURES[architecture]
    stand_in = cache_siglip_tokenizer(offline_hub, architecture, CAPTIONS)
    model, _, tokenizer = loading.load(_spec(architecture))
    info = tower(model, "text")
    assert (info.kind, info.n_layers, info.width, info.n_heads, info.d_mlp, info.n_tokens) == (
        "text",
        n_layers,
        width,
        n_heads,
        d_mlp,
        context,
    )
    assert concepts.text_pooling(model, tokenizer)[:2] == ("last", PAD)

    tokens_PL = tokenizer(CAPTIONS)
    for row, caption in zip(tokens_PL.tolist(), CAPTIONS):
        words = stand_in.encode(caption).ids[:-1]  # without its </s>
        assert row == (words[: context - 1] + [EOS] + [PAD] * context)[:context]  # cut to the context, </s> kept
    assert max(max(row) for row in tokens_PL.tolist()) < model.text.token_embedding.num_embeddings

    ends = (0, n_layers - 1)
    names = [f"text.blocks.{layer}.{hook}" for layer in ends for hook in TRANSFORMER_HOOKS]
    assert {(resolve(model, name).tower, resolve(model, name).layer) for name in names} == {("text", e) for e in ends}
    with torch.inference_mode():
        plain_PE = model.encode_text(tokens_PL)
        with hooked(model, capture=names) as cache:
            embedding_PE = model.encode_text(tokens_PL)
    assert no_hooks(model)
    torch.testing.assert_close(embedding_PE, plain_PE, rtol=0, atol=1e-6)  # capturing changes nothing
    normalised_PE = loading.encode_text(model, tokenizer, CAPTIONS)
    assert normalised_PE.shape == (3, width) and torch.isfinite(normalised_PE).all()
    torch.testing.assert_close(normalised_PE, torch.nn.functional.normalize(plain_PE, dim=-1))
    assert torch.cdist(normalised_PE, normalised_PE).triu(diagonal=1)[0, 1:].min() > 1e-3  # captions differ

    n_prompts, d_head = len(CAPTIONS), width // n_heads
    for layer in ends:

        def site(hook, layer=layer):
            return cache[f"text.blocks.{layer}.{hook}"]

        assert site("attn.hook_z").shape == (n_prompts, context, n_heads, d_head)
        assert site("attn.hook_result").shape == (n_prompts, context, n_heads, width)
        assert site("mlp.hook_post").shape == (n_prompts, context, d_mlp)
        for hook in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            assert site(hook).shape == (n_prompts, context, width), hook
        # no causal mask in SigLIP's text tower: the recomputed heads still sum to the attention output
        heads_PTD = site("attn.hook_result").sum(dim=2) + info.blocks[layer].attn.out_proj.bias
        torch.testing.assert_close(heads_PTD, site("hook_attn_out"), rtol=0, atol=ATOL)
        torch.testing.assert_close(site("hook_resid_pre") + site("hook_attn_out"), site("hook_resid_mid"))
        torch.testing.assert_close(site("hook_resid_mid") + site("hook_mlp_out"), site("hook_resid_post"))
    # SigLIP pools the last position: the embedding is the projected last token of the last block
    with torch.inference_mode():
        last_PD = model.text.ln_final(cache[f"text.blocks.{n_layers - 1}.hook_resid_post"][:, -1])
        torch.testing.assert_close(model.text.text_projection(last_PD), plain_PE)


def test_extract_text_sites_offline(tmp_path, tiny_dataset, offline_hub):
    """A text-tower site in the ViT-B-16 activation store: the images' captions through the stand-in tokenizer."""
    spec = _spec("ViT-B-16-SigLIP")
    captions = activation_extraction.image_captions(datasets.load(tiny_dataset))
    cache_siglip_tokenizer(offline_hub, spec.architecture, captions)
    store = activation_extraction.extract(
        spec,
        tiny_dataset,
        tmp_path / "siglip-text.zarr",
        layers=[11],
        sites=("visual.blocks.*.hook_mlp_out", "text.blocks.11.hook_resid_post"),
        reductions=("mean",),
        save_tokens=False,
        batch_size=5,
        device="cpu",
        code="test-code",
    )
    ds = activations.open_store(store)
    resid = activations.site_activations(ds, "text.blocks.11.hook_resid_post")
    assert resid.shape == (10, 64, 768) and np.isfinite(resid.values).all()
    assert activation_extraction.StoreProvenance.from_attrs(ds.attrs).sites == (
        "visual.blocks.11.hook_mlp_out",
        "text.blocks.11.hook_resid_post",
    )
