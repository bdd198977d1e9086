"""Tests of the neuron x attention-head decomposition (methods.md Sec. 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from toys import relative_error, torch_attnpool_attention

from clipmech.decomposition import pool
from clipmech.hooks import pool_forward
from clipmech.hooks.attnpool import capture_attnpool

TINY_IMAGE = 96  # feature map 3 x 3, T = 10 tokens
TINY_GRID = TINY_IMAGE // 32


def _tiny_clip(dtype: torch.dtype) -> CLIP:
    """ModifiedResNet CLIP with C = 512 neurons, H = 8 heads, E = 32, random weights.

    Batch-norm scales are made non-zero (open_clip zero-inits bn3) and the query weights and
    positional embedding are rescaled so the attention is far from uniform: a wrong token order
    or head split then changes the output.
    """
    torch.manual_seed(0)
    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=(1, 1, 1, 1), width=16, head_width=64, image_size=TINY_IMAGE),
        text_cfg=CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=1),
    )
    with torch.no_grad():
        for module in model.visual.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
        attnpool = model.visual.attnpool
        attnpool.q_proj.weight.mul_(32.0)
        attnpool.k_proj.weight.mul_(8.0)
        attnpool.positional_embedding.mul_(0.5)
    return model.to(dtype).eval()


def _smooth_images(n: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, 6, 6, generator=gen, dtype=torch.float64)
    return (3.0 * F.interpolate(low, size=TINY_IMAGE, mode="bilinear", align_corners=False)).to(dtype)


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_clip(torch.float64)
    images = _smooth_images(60, torch.float64)
    cap = capture_attnpool(model, images)
    weights = pool.attnpool_weights(model.visual.attnpool)
    u_HCE = pool.neuron_head_directions(weights)
    bias_E = pool.output_bias(weights)
    x_NTC = cap.x_NTC.numpy()
    alpha_NHT = cap.alpha_NHT.numpy()
    s_NHC = pool.pair_scalars(x_NTC, alpha_NHT)
    return dict(
        model=model,
        images=images,
        cap=cap,
        weights=weights,
        u=u_HCE,
        bias=bias_E,
        x=x_NTC,
        alpha=alpha_NHT,
        s=s_NHC,
        y=cap.y_NE.numpy(),
    )


# ---------------------------------------------------------------- capture


def test_capture_shapes_and_output_is_model_output(tiny):
    cap, model = tiny["cap"], tiny["model"]
    assert cap.x_NTC.shape == (60, TINY_GRID**2 + 1, 512)
    assert cap.alpha_NHT.shape == (60, 8, TINY_GRID**2 + 1)
    assert cap.y_NE.shape == (60, 32)
    with torch.inference_mode():
        y_direct = model.visual(tiny["images"])
    torch.testing.assert_close(cap.y_NE, y_direct, rtol=0, atol=0)
    np.testing.assert_allclose(tiny["alpha"].sum(-1), 1.0, atol=1e-12)


def test_tokens_are_mean_token_then_row_major_grid_plus_positional_embedding(tiny):
    model, x_NTC = tiny["model"], tiny["x"]
    visual = model.visual
    with torch.inference_mode():
        feats = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(tiny["images"])))))
    feats_NCHW = feats.numpy()
    pos_TC = tiny["weights"].positional_embedding
    raw_NTC = x_NTC - pos_TC[None]
    grid_NCHW = pool.tokens_to_grid(np.swapaxes(raw_NTC, 1, 2), TINY_GRID, TINY_GRID)
    np.testing.assert_allclose(grid_NCHW, feats_NCHW, rtol=0, atol=1e-12)
    np.testing.assert_allclose(raw_NTC[:, 0], feats_NCHW.mean(axis=(2, 3)), rtol=0, atol=1e-12)


def test_alpha_matches_module_attention_weights(tiny):
    attnpool, x_NTC, alpha_NHT = tiny["model"].visual.attnpool, tiny["cap"].x_NTC, tiny["alpha"]
    x_TNC = x_NTC.transpose(0, 1)
    w_NHTT = torch_attnpool_attention(attnpool, x_TNC)
    np.testing.assert_allclose(alpha_NHT, w_NHTT[:, :, 0, :].numpy(), rtol=0, atol=1e-12)
    # The attention must be informative for this test (and the reconstruction) to bite.
    assert alpha_NHT.max(axis=-1).mean() > 1.5 / alpha_NHT.shape[-1]
    assert attnpool.k_proj.bias.abs().max() > 0  # key bias present, and correctly dropped as cancelling


def test_capture_float32_passes_default_check_and_matches_float64(tiny):
    model32 = _tiny_clip(torch.float32)
    cap32 = capture_attnpool(model32, tiny["images"][:8].float())
    assert cap32.alpha_NHT.dtype == torch.float32 and cap32.x_NTC.dtype == torch.float32
    np.testing.assert_allclose(cap32.alpha_NHT.numpy(), tiny["alpha"][:8], atol=1e-4)


def test_hooks_removed_after_normal_exit_and_when_forward_raises(tiny):
    model = tiny["model"]
    attnpool = model.visual.attnpool
    assert capture_attnpool(model, tiny["images"][:2]).x_NTC.shape[0] == 2
    assert len(attnpool._forward_hooks) == 0

    bad_images = torch.zeros(2, 4, TINY_IMAGE, TINY_IMAGE, dtype=torch.float64)  # 4 channels: conv raises
    with pytest.raises(RuntimeError):
        capture_attnpool(model, bad_images)
    assert len(attnpool._forward_hooks) == 0


def test_capture_check_detects_a_module_that_differs_and_still_removes_hooks(tiny):
    model = tiny["model"]
    attnpool = model.visual.attnpool
    tamper = attnpool.register_forward_hook(lambda mod, args, out: out * 1.001, prepend=True)
    try:
        with pytest.raises(RuntimeError, match="relative error"):
            capture_attnpool(model, tiny["images"][:2])
    finally:
        tamper.remove()
    assert len(attnpool._forward_hooks) == 0


def test_capture_rejects_model_without_attnpool(tiny_vit):
    with pytest.raises(TypeError, match="vit image tower without visual.attnpool"):
        capture_attnpool(tiny_vit[0], torch.zeros(1, 3, 64, 64))
    vit = torch.nn.Module()
    vit.visual = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="unsupported vision tower Linear"):
        capture_attnpool(vit, torch.zeros(1, 2))


def test_attnpool_tokens_rejects_mismatched_positional_embedding():
    with pytest.raises(ValueError, match="positional_embedding_TC"):
        pool_forward.attnpool_tokens(torch.zeros(1, 4, 2, 2), torch.zeros(4, 4))


# ---------------------------------------------------------------- directions and reconstruction


def test_directions_are_value_then_output_projection_of_one_head(tiny):
    attnpool, u_HCE = tiny["model"].visual.attnpool, tiny["u"]
    d = 512 // attnpool.num_heads
    with torch.no_grad():
        for h, n in [(0, 0), (3, 100), (7, 511)]:
            e_n = torch.zeros(512, dtype=torch.float64)
            e_n[n] = 1.0
            v = attnpool.v_proj.weight @ e_n  # no bias: the bias goes into output_bias
            v_head = torch.zeros_like(v)
            v_head[h * d : (h + 1) * d] = v[h * d : (h + 1) * d]
            np.testing.assert_allclose(u_HCE[h, n], (attnpool.c_proj.weight @ v_head).numpy(), rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        bias = attnpool.c_proj(attnpool.v_proj.bias).numpy()
    np.testing.assert_allclose(tiny["bias"], bias, rtol=1e-12, atol=1e-14)


def test_reconstruction_of_tiny_model_output(tiny):
    y_hat = pool.reconstruct_output(tiny["s"], tiny["u"], tiny["bias"], chunk_size=7)
    err = relative_error(y_hat, tiny["y"])
    assert err < 1e-5, err


def test_head_neuron_and_pair_contributions_sum_to_output(tiny):
    s, u, bias, y = tiny["s"], tiny["u"], tiny["bias"], tiny["y"]
    h_count, c_count, _ = u.shape
    heads = pool.head_contributions(s, u)
    assert heads.shape == (60, h_count, 32)
    assert relative_error(heads.sum(axis=1) + bias, y) < 1e-10

    neurons = pool.neuron_contributions(s, u, np.arange(c_count))
    assert relative_error(neurons.sum(axis=1) + bias, y) < 1e-10

    hh, nn_ = np.meshgrid(np.arange(h_count), np.arange(c_count), indexing="ij")
    pairs = pool.pair_contributions(s, u, hh.ravel(), nn_.ravel())
    assert relative_error(pairs.sum(axis=1) + bias, y) < 1e-10

    norms = pool.pair_contribution_norms(s, pool.direction_norms(u))
    np.testing.assert_allclose(norms.reshape(60, -1), np.linalg.norm(pairs, axis=-1), rtol=1e-10, atol=1e-14)
    neuron_norms = pool.neuron_contribution_norms(s, pool.neuron_gram(u))
    np.testing.assert_allclose(neuron_norms, np.linalg.norm(neurons, axis=-1), rtol=1e-8, atol=1e-12)


def test_token_maps_sum_to_pair_scalars_and_projected_output(tiny):
    x, alpha, s, u, bias, y = (tiny[k] for k in ("x", "alpha", "s", "u", "bias", "y"))
    heads_K, neurons_K = np.array([0, 5, 7]), np.array([3, 3, 400])
    a_NKT = pool.token_pair_scalars(x, alpha, heads_K, neurons_K)
    assert a_NKT.shape == (60, 3, TINY_GRID**2 + 1)
    np.testing.assert_allclose(a_NKT.sum(-1), s[:, heads_K, neurons_K], rtol=1e-12)
    # a pair's spatial map is the attention map times the neuron's activation map
    grid = pool.tokens_to_grid(a_NKT, TINY_GRID, TINY_GRID)
    expected = pool.tokens_to_grid(alpha[:, 5] * x[:, :, 3], TINY_GRID, TINY_GRID)
    np.testing.assert_allclose(grid[:, 1], expected, rtol=1e-12)

    z_KE = np.random.default_rng(0).standard_normal((4, 32))
    m_NHTD = pool.token_head_maps(x, alpha, u, z_KE)
    assert m_NHTD.shape == (60, 8, TINY_GRID**2 + 1, 4)
    np.testing.assert_allclose(m_NHTD.sum(axis=(1, 2)), (y - bias) @ z_KE.T, rtol=1e-9, atol=1e-12)


def test_pair_index_validation(tiny):
    with pytest.raises(ValueError, match="heads_K must lie"):
        pool.pair_contributions(tiny["s"], tiny["u"], [8], [0])
    with pytest.raises(ValueError, match="one head per neuron"):
        pool.token_pair_scalars(tiny["x"], tiny["alpha"], [0, 1], [0])


# ---------------------------------------------------------------- rank-1


def test_first_pc_of_pair_contributions_is_the_direction(tiny):
    s, u = tiny["s"], tiny["u"]
    norms_HC = pool.pair_contribution_norms(s, pool.direction_norms(u)).mean(axis=0)
    for h, n in [np.unravel_index(np.argmax(norms_HC), norms_HC.shape), (2, 17)]:
        c_NE = pool.pair_contributions(s, u, [h], [n])[:, 0]
        pcs, explained = pool.top_norm_principal_components(c_NE, top_k=50)
        cos = abs(float(pcs[0] @ u[h, n]) / np.linalg.norm(u[h, n]))
        assert cos > 0.999, (h, n, cos)
        assert explained[0] > 0.999


def test_principal_components_on_known_data():
    rng = np.random.default_rng(0)
    u1, u2 = np.eye(6)[0], np.eye(6)[1]
    # rank-2 data: a rank-1 claim on it must fail
    c_NE = rng.standard_normal((200, 1)) * u1 + 0.9 * rng.standard_normal((200, 1)) * u2 + 5.0 * u1
    pcs, explained = pool.top_norm_principal_components(c_NE, top_k=50, n_components=2)
    assert explained[0] < 0.9
    assert np.isclose(explained.sum(), 1.0)
    np.testing.assert_allclose(pcs @ pcs.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(pcs[:, 2:], 0.0, atol=1e-12)  # in the span of u1, u2
    # uses only the top-k images by norm, and signs follow the mean
    # (the 40 low-norm images vary most, along u2: any other selection puts PC 1 near u2)
    low_NE = np.outer(np.tile([0.95, -0.95], 20), u2)
    c_NE = np.concatenate([low_NE[:20], np.outer(np.linspace(1.0, 1.2, 50), u1), low_NE[20:]])
    pcs, explained = pool.top_norm_principal_components(c_NE, top_k=50)
    np.testing.assert_allclose(pcs[0], u1, atol=1e-12)
    pcs, _ = pool.top_norm_principal_components(-c_NE, top_k=50)
    np.testing.assert_allclose(pcs[0], -u1, atol=1e-12)
    with pytest.raises(ValueError, match="n_components"):
        pool.top_norm_principal_components(c_NE, top_k=3, n_components=4)


# ---------------------------------------------------------------- mean-ablation


def test_mean_ablation_all_kept_and_none_kept(tiny):
    s, u, bias, y = tiny["s"], tiny["u"], tiny["bias"], tiny["y"]
    h_count, c_count, _ = u.shape
    for level, shape in [("pair", (h_count, c_count)), ("neuron", (c_count,)), ("head", (h_count,))]:
        kept = pool.mean_ablate(s, u, bias, np.ones(shape, bool), level=level, chunk_size=16)
        assert relative_error(kept, y) < 1e-10
        ablated = pool.mean_ablate(s, u, bias, np.zeros(shape, bool), level=level)
        np.testing.assert_allclose(ablated, np.broadcast_to(y.mean(axis=0), y.shape), rtol=1e-9, atol=1e-12)


def test_mean_ablation_matches_explicit_sum_over_pairs(tiny):
    s, u, bias = tiny["s"], tiny["u"], tiny["bias"]
    rng = np.random.default_rng(0)
    keep_HC = rng.random(u.shape[:2]) < 0.3
    s_mean_HC = rng.standard_normal(u.shape[:2])  # a reference-set mean other than this batch's
    got = pool.mean_ablate(s, u, bias, keep_HC, s_mean_HC=s_mean_HC, chunk_size=9)
    c_NHCE = np.where(keep_HC[None, :, :, None], s[..., None], s_mean_HC[None, :, :, None]) * u[None]
    np.testing.assert_allclose(got, c_NHCE.sum(axis=(1, 2)) + bias, rtol=1e-9, atol=1e-12)

    keep_C = rng.random(u.shape[1]) < 0.5
    by_neuron = pool.mean_ablate(s, u, bias, keep_C, level="neuron")
    by_pair = pool.mean_ablate(s, u, bias, np.broadcast_to(keep_C, u.shape[:2]).copy())
    np.testing.assert_allclose(by_neuron, by_pair, rtol=1e-12)
    neurons = pool.neuron_contributions(s, u, np.arange(u.shape[1]))
    explicit = np.where(keep_C[None, :, None], neurons, neurons.mean(axis=0)).sum(axis=1) + bias
    np.testing.assert_allclose(by_neuron, explicit, rtol=1e-9, atol=1e-12)


def test_keep_masks_and_top_fraction():
    with pytest.raises(ValueError, match="level must be one of"):
        pool.keep_mask_pairs(np.ones(3, bool), "token", 3, 4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        pool.keep_mask_pairs(np.ones(3, bool), "neuron", 3, 4)
    assert pool.keep_mask_pairs(np.array([True, False, True]), "head", 3, 2).tolist() == [
        [True, True],
        [False, False],
        [True, True],
    ]
    score = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    assert pool.top_fraction_mask(score, 0.5).tolist() == [[False, True, True], [True, False, False]]
    assert not pool.top_fraction_mask(score, 0.0).any() and pool.top_fraction_mask(score, 1.0).all()
    with pytest.raises(ValueError, match="fraction"):
        pool.top_fraction_mask(score, 1.5)
