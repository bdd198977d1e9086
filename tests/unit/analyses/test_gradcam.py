"""Unit tests of clipmech.analyses.gradcam (methods.md Sec. 4) on tiny random-weight open_clip models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from toys import no_hooks

from clipmech.analyses.gradcam import (
    capture_activation,
    energy_pointing_game,
    gradcam,
    resolve_target,
)

TEXT_CFG = CLIPTextCfg(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
EPS = 1e-6


def _tiny(vision_cfg):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return CLIP(16, vision_cfg, TEXT_CFG).double().eval()


@pytest.fixture(scope="module")
def vit():
    """2 blocks, width 32, 32 x 32 images in 8 x 8 patches: a 4 x 4 grid."""
    return _tiny(CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32))


@pytest.fixture(scope="module")
def resnet():
    """ModifiedResNet, 64 x 64 images: layer4 is (256, 2, 2)."""
    return _tiny(CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, head_width=8, image_size=64))


def _inputs(size, generator_seed=1, n_images=2, n_prompts=3):
    g = torch.Generator().manual_seed(generator_seed)
    images = torch.randn(n_images, 3, size, size, generator=g, dtype=torch.float64)
    text = torch.randn(n_prompts, 16, generator=g, dtype=torch.float64)
    return images, text


def _scores(model, images, text, score):
    """S (N, P) computed directly from the model (no clipmech code)."""
    cosine = model.encode_image(images, normalize=True) @ F.normalize(text, dim=-1).T
    return cosine if score == "cosine" else torch.softmax(model.logit_scale.exp() * cosine, dim=1)


def _finite_difference_alpha(model, images, text, score, module, hook, shift, n_positions):
    """alpha_c by central differences: shift A^c by +-EPS at every spatial position at once, so
    (S(+) - S(-)) / (2 EPS) = sum_ij dS/dA^c_ij, and divide by h w."""

    def scores_with(delta):
        if hook == "pre":
            handle = module.register_forward_pre_hook(lambda m, args: (shift(args[0], delta), *args[1:]))
        else:
            handle = module.register_forward_hook(lambda m, args, out: shift(out, delta))
        try:
            return _scores(model, images, text, score)
        finally:
            handle.remove()

    with torch.no_grad():
        return ((scores_with(EPS) - scores_with(-EPS)) / (2 * EPS) / n_positions).numpy()


@pytest.mark.parametrize("score", ["cosine", "softmax"])
@pytest.mark.parametrize(
    "target, block, site",
    [
        (None, -1, "hook_resid_pre"),
        ("visual.blocks.0.hook_mlp_out", 0, "hook_mlp_out"),
        ("visual.blocks.-2.hook_resid_post", 0, "hook_resid_post"),
    ],
)
def test_vit_alpha_matches_finite_difference(vit, score, target, block, site):
    images, text = _inputs(32)
    result = gradcam(vit, images, text, target=target, score=score)
    assert result.layer == f"visual.blocks.{block % 2}.{site}"
    assert result.alpha_NPC.shape == (2, 3, 32) and result.cam_NPhw.shape == (2, 3, 4, 4)
    assert result.maps_NPHW.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(result.scores_NP, _scores(vit, images, text, score).detach().numpy(), rtol=1e-12)

    resblock = vit.visual.transformer.resblocks[block]
    module, hook = {
        "hook_resid_pre": (resblock, "pre"),
        "hook_mlp_out": (resblock.mlp, "post"),
        "hook_resid_post": (resblock, "post"),
    }[site]
    for c in (0, 13, 31):

        def shift(a, delta, c=c):
            a = a.clone()
            a[:, 1:, c] += delta  # every patch token, class token untouched
            return a

        fd_NP = _finite_difference_alpha(vit, images, text, score, module, hook, shift, 16)
        assert np.abs(fd_NP).max() > 0
        np.testing.assert_allclose(result.alpha_NPC[:, :, c], fd_NP, rtol=1e-5, atol=1e-9 * np.abs(fd_NP).max())

    # map = ReLU(sum_c alpha_c A^c) on A captured by an independent hook, patches in raster order
    captured = {}
    handle = (module.register_forward_pre_hook if hook == "pre" else module.register_forward_hook)(
        lambda m, args, *out: captured.setdefault("a", (out[0] if out else args[0]).detach())
    )
    try:
        with torch.no_grad():
            vit.encode_image(images)
    finally:
        handle.remove()
    a_NhwC = captured["a"][:, 1:].reshape(2, 4, 4, 32).numpy()
    expected = np.maximum(np.einsum("nhwc,npc->nphw", a_NhwC, result.alpha_NPC), 0)
    np.testing.assert_allclose(result.cam_NPhw, expected, rtol=1e-10, atol=1e-14)
    assert (result.maps_NPHW >= 0).all() and result.maps_NPHW.max() > 0
    assert no_hooks(vit)


def test_resnet_alpha_matches_finite_difference(resnet):
    images, text = _inputs(64)
    result = gradcam(resnet, images, text, prompts=[2, 0])
    assert result.layer == "visual.blocks.3.hook_resid_post"
    assert result.alpha_NPC.shape == (2, 2, 256) and result.cam_NPhw.shape == (2, 2, 2, 2)
    assert result.maps_NPHW.shape == (2, 2, 64, 64)
    for c in (0, 100, 255):

        def shift(a, delta, c=c):
            a = a.clone()
            a[:, c] += delta
            return a

        fd_NP = _finite_difference_alpha(resnet, images, text, "cosine", resnet.visual.layer4, "post", shift, 4)
        assert np.abs(fd_NP).max() > 0
        np.testing.assert_allclose(result.alpha_NPC[:, :, c], fd_NP[:, [2, 0]], rtol=1e-5, atol=1e-12)
    assert no_hooks(resnet)


def test_last_block_mlp_output_has_zero_gradient(vit):
    images, text = _inputs(32)
    for target in ("visual.blocks.-1.hook_mlp_out", "visual.blocks.1.hook_resid_post"):
        with pytest.raises(ValueError, match=r"visual\.blocks\.1\.hook_(mlp_out|resid_post).*exactly zero"):
            gradcam(vit, images, text, target=target)
        assert no_hooks(vit)


def test_hooks_removed_when_body_raises(vit):
    layer = resolve_target(vit, "visual.blocks.0.hook_resid_pre")
    with pytest.raises(KeyError):
        with capture_activation(vit, layer) as capture:
            with torch.no_grad():
                vit.encode_image(_inputs(32)[0])
            assert capture.activation.shape == (2, 17, 32) and capture.activation.requires_grad
            raise KeyError("boom")
    assert no_hooks(vit)


def test_rejects_token_first_layout(vit):
    images, text = _inputs(32)
    vit.visual.transformer.batch_first = False  # the layout of open_clip < 3
    try:
        with pytest.raises(RuntimeError, match="batch-first"):
            gradcam(vit, images, text)
    finally:
        vit.visual.transformer.batch_first = True
    assert no_hooks(vit)


def test_bad_arguments(vit, resnet):
    images, text = _inputs(32)
    valid = r"(.|\n)*valid targets: visual.blocks.<l>.<hook>.*hook_mlp_out"
    with pytest.raises(ValueError, match=r"'resblocks.0.attn'" + valid):
        gradcam(vit, images, text, target="resblocks.0.attn")
    with pytest.raises(ValueError, match="'visual.blocks.0.attn.hook_z' is not a vision-tower site with a patch grid"):
        gradcam(vit, images, text, target="visual.blocks.0.attn.hook_z")
    with pytest.raises(ValueError, match="'text.blocks.0.hook_resid_post' is not a vision-tower site"):
        gradcam(vit, images, text, target="text.blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match=r"layer 2 out of range(.|\n)*valid targets"):
        gradcam(vit, images, text, target="visual.blocks.2.hook_resid_pre")
    with pytest.raises(ValueError, match=r"'visual.blocks.3.hook_mlp_out'(.|\n)*hook_resid_post for l in 0..3"):
        resolve_target(resnet, "visual.blocks.3.hook_mlp_out")
    with pytest.raises(ValueError, match="'visual.attnpool.hook_x' is not a vision-tower site"):
        resolve_target(resnet, "visual.attnpool.hook_x")
    with pytest.raises(ValueError, match="'logit'"):
        gradcam(vit, images, text, score="logit")
    with pytest.raises(ValueError, match=r"prompt indices \[3\]"):
        gradcam(vit, images, text, prompts=[3])
    with torch.inference_mode(), pytest.raises(ValueError, match="inference_mode"):
        gradcam(vit, images, text)
    vit.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            gradcam(vit, images, text)
    finally:
        vit.eval()


def test_energy_pointing_game():
    mask_HW = np.array(
        [
            [1, 1, 0, 0, 2, 2],
            [1, 1, 0, 0, 2, 2],
            [0, 0, 0, 0, 0, 0],
            [3, 3, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    map_HW = np.zeros((4, 6))
    map_HW[0, 0] = 4.0  # object 1
    map_HW[1, 5] = 3.0  # object 2
    map_HW[3, 1] = 1.0  # object 3
    map_HW[2, :] = 0.25  # background, 1.5 in all
    map_HW[3, 5] = 0.5  # background
    result = energy_pointing_game(map_HW, mask_HW, target_ids=[1], distractor_ids=[2])
    assert result["total_energy"] == pytest.approx(10.0)
    assert result["target"] == pytest.approx(0.4)
    assert result["distractor"] == pytest.approx(0.3)
    assert result["other"] == pytest.approx(0.1)
    assert result["background"] == pytest.approx(0.2)
    both = energy_pointing_game(map_HW, mask_HW, target_ids=[1, 3], distractor_ids=[2])
    assert both["target"] == pytest.approx(0.5) and both["other"] == 0.0
    assert np.isnan(energy_pointing_game(np.zeros((4, 6)), mask_HW, [1])["target"])
    with pytest.raises(ValueError, match=r"\[4\] do not occur"):
        energy_pointing_game(map_HW, mask_HW, [1], [4])
    with pytest.raises(ValueError, match="both target and distractor"):
        energy_pointing_game(map_HW, mask_HW, [1], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        energy_pointing_game(-map_HW, mask_HW, [1])
    with pytest.raises(ValueError, match="one shape"):
        energy_pointing_game(map_HW[:3], mask_HW, [1])
