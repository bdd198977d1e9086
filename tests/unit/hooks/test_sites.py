"""Hook sites (clipmech.hooks.sites; methods.md Secs. 5-6): identities, capture / replace / edit, hook removal, errors."""

import copy

import pytest
import torch
from toys import TimmTrunkModel, attention_outputs, seeded_double

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.hooks.pool_forward import attnpool_tokens, query_attention
from clipmech.hooks.sites import canonical_name, hooked, resolve, site_names
from clipmech.models.towers import tower

ATOL = 1e-6


@pytest.fixture(scope="module")
def timm_model():
    return seeded_double(TimmTrunkModel)


def _run(model, tower_name):
    """A forward function and its input for one tower of a model, in float64."""
    generator = torch.Generator().manual_seed(1)
    if tower_name == "text":
        tokens = torch.randint(0, 49408, (2, tower(model, "text").n_tokens), generator=generator)
        return lambda: model.encode_text(tokens)
    size = tower(model).image_size
    images = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
    return lambda: model.encode_image(images)


CASES = [("vit", "visual"), ("vit", "text"), ("timm", "visual")]


@pytest.fixture(params=CASES, ids=["vit", "text", "timm"])
def case(request, vit, timm_model):
    model = {"vit": vit, "timm": timm_model}[request.param[0]]
    return model, request.param[1], _run(model, request.param[1])


def test_head_results_sum_to_attention_output(case):
    model, tower_name, forward = case
    info = tower(model, tower_name)
    names = [f"{tower_name}.blocks.{layer}.attn.hook_result" for layer in range(info.n_layers)]
    outputs, handles = attention_outputs(info)
    try:
        with torch.no_grad(), hooked(model, capture=names) as cache:
            forward()
    finally:
        for handle in handles:
            handle.remove()
    for layer, name in enumerate(names):
        result_NTHD = cache[name]
        assert result_NTHD.shape[2:] == (info.n_heads, info.width)
        proj = info.blocks[layer].attn.out_proj if info.kind != "timm" else info.blocks[layer].attn.proj
        torch.testing.assert_close(result_NTHD.sum(dim=2) + proj.bias, outputs[layer], rtol=0, atol=ATOL)


def test_attnpool_results_sum_to_output(rn):
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    names = [f"visual.attnpool.{hook}" for hook in ("hook_x", "hook_alpha", "hook_result", "hook_out")]
    with torch.no_grad(), hooked(rn, capture=names) as cache:
        y_NE = rn.encode_image(images)
    torch.testing.assert_close(cache["visual.attnpool.hook_out"], y_NE, rtol=0, atol=0)
    result_NHE = cache["visual.attnpool.hook_result"]
    assert result_NHE.shape == (2, 8, 64)
    torch.testing.assert_close(result_NHE.sum(dim=1) + rn.visual.attnpool.c_proj.bias, y_NE, rtol=0, atol=ATOL)
    pool = rn.visual.attnpool
    inputs = {}
    handle = pool.register_forward_hook(lambda module, args, out: inputs.setdefault("features", args[0]))
    try:
        with torch.no_grad():
            rn.encode_image(images)
    finally:
        handle.remove()
    x_NTC = attnpool_tokens(inputs["features"], pool.positional_embedding)
    alpha_NHT = query_attention(x_NTC, pool.q_proj.weight, pool.q_proj.bias, pool.k_proj.weight, pool.num_heads)
    torch.testing.assert_close(cache["visual.attnpool.hook_x"], x_NTC, rtol=0, atol=0)
    torch.testing.assert_close(cache["visual.attnpool.hook_alpha"], alpha_NHT, rtol=0, atol=0)


def test_mlp_out_is_bit_identical_to_a_hook_on_block_mlp(tiny_vit):
    model, _ = tiny_vit
    pixels = torch.randn(3, 3, 64, 64)
    names = ["visual.blocks.0.hook_mlp_out", "visual.blocks.1.hook_mlp_out"]
    reference = {}
    blocks = model.visual.transformer.resblocks
    handles = [
        block.mlp.register_forward_hook(
            lambda module, args, out, layer=layer: reference.setdefault(layer, out.detach())
        )
        for layer, block in enumerate(blocks)
    ]
    try:
        with torch.inference_mode():
            model.encode_image(pixels)
    finally:
        for handle in handles:
            handle.remove()
    with torch.inference_mode(), hooked(model, capture=names) as cache:
        model.encode_image(pixels)
    for layer, name in enumerate(names):
        assert torch.equal(cache[name], reference[layer])
    assert all(len(block.mlp._forward_hooks) == 0 for block in blocks)


def test_residual_stream_identities(case):
    model, tower_name, forward = case
    info = tower(model, tower_name)
    hooks = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")
    names = [f"{tower_name}.blocks.{layer}.{hook}" for layer in range(info.n_layers) for hook in hooks]
    with torch.no_grad(), hooked(model, capture=names) as cache:
        forward()
    for layer in range(info.n_layers):
        act = {hook: cache[f"{tower_name}.blocks.{layer}.{hook}"] for hook in hooks}
        pre, attn_out, mid = act["hook_resid_pre"], act["hook_attn_out"], act["hook_resid_mid"]
        torch.testing.assert_close(pre + attn_out, mid, rtol=0, atol=ATOL)
        torch.testing.assert_close(mid + act["hook_mlp_out"], act["hook_resid_post"], rtol=0, atol=ATOL)
        if layer + 1 < info.n_layers:
            assert torch.equal(act["hook_resid_post"], cache[f"{tower_name}.blocks.{layer + 1}.hook_resid_pre"])


SIMPLE_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")


@pytest.mark.parametrize("hook", SIMPLE_HOOKS)
def test_replace_with_own_activation_is_exact_and_zeros_change(case, hook):
    model, tower_name, forward = case
    name = f"{tower_name}.blocks.0.{hook}"
    with torch.no_grad():
        clean = forward()
        with hooked(model, capture=[name]) as cache:
            forward()
        own = cache[name].clone()
        with hooked(model, replace={name: own}):
            patched = forward()
        with hooked(model, replace={name: torch.zeros_like(own)}):
            zeroed = forward()
    assert torch.equal(patched, clean)
    assert not torch.allclose(zeroed, clean)


def test_replaced_resid_mid_is_the_residual_the_block_adds_to(case):
    model, tower_name, forward = case
    names = [f"{tower_name}.blocks.0.{hook}" for hook in ("hook_resid_mid", "hook_mlp_out", "hook_resid_post")]
    with torch.no_grad(), hooked(model, capture=names) as cache:
        forward()
        mid = cache[names[0]]
        with hooked(model, replace={names[0]: 3 * mid}, capture=names) as patched:
            forward()
    torch.testing.assert_close(patched[names[0]], 3 * mid, rtol=0, atol=0)
    torch.testing.assert_close(patched[names[2]], 3 * mid + patched[names[1]], rtol=0, atol=0)


def test_edit_doubling_hidden_neurons_equals_scaling_c_proj(vit):
    forward = _run(vit, "visual")
    scaled = copy.deepcopy(vit)
    with torch.no_grad():
        scaled.visual.transformer.resblocks[0].mlp.c_proj.weight.mul_(2)
        expected = _run(scaled, "visual")()
        with hooked(vit, edit={"visual.blocks.0.mlp.hook_post": lambda a: 2 * a}):
            edited = forward()
        clean = forward()
    torch.testing.assert_close(edited, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(edited, clean)


@pytest.mark.parametrize("hook", ["attn.hook_result", "attn.hook_z"])
def test_per_head_replace(case, hook):
    model, tower_name, forward = case
    name = f"{tower_name}.blocks.0.{hook}"
    attn_out = f"{tower_name}.blocks.0.hook_attn_out"
    result = f"{tower_name}.blocks.0.attn.hook_result"
    with torch.no_grad():
        with hooked(model, capture=[name, attn_out, result]) as cache:
            clean = forward()
        own = cache[name].clone()
        with hooked(model, replace={name: own}):
            patched = forward()
        ablated = own.clone()
        ablated[:, :, 1] = 0
        with hooked(model, replace={name: ablated}, capture=[attn_out]) as ablated_cache:
            changed = forward()
    torch.testing.assert_close(patched, clean, rtol=0, atol=ATOL)
    assert not torch.allclose(changed, clean)
    # Zeroing head 1 removes exactly that head's result from the attention output.
    expected = cache[attn_out] - cache[result][:, :, 1]
    torch.testing.assert_close(ablated_cache[attn_out], expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("hook", ["hook_x", "hook_alpha", "hook_result"])
def test_attnpool_replace(rn, hook):
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    name = f"visual.attnpool.{hook}"
    with torch.no_grad():
        with hooked(rn, capture=[name, "visual.attnpool.hook_result"]) as cache:
            clean = rn.encode_image(images)
        with hooked(rn, replace={name: cache[name].clone()}):
            patched = rn.encode_image(images)
        with hooked(rn, replace={name: torch.zeros_like(cache[name])}):
            zeroed = rn.encode_image(images)
        ablated = cache["visual.attnpool.hook_result"].clone()
        ablated[:, 2] = 0
        with hooked(rn, replace={"visual.attnpool.hook_result": ablated}):
            head_ablated = rn.encode_image(images)
    torch.testing.assert_close(patched, clean, rtol=0, atol=ATOL)
    assert not torch.allclose(zeroed, clean)
    expected = clean - cache["visual.attnpool.hook_result"][:, 2]
    torch.testing.assert_close(head_ablated, expected, rtol=0, atol=ATOL)


def test_resnet_stage_is_gradcam_layer4(rn):
    site = resolve(rn, "visual.blocks.3.hook_resid_post")
    assert site.module is rn.visual.layer4 and site.position == "output" and site.layer == 3
    images = torch.randn(1, 3, 128, 128, dtype=torch.float64)
    with torch.no_grad(), hooked(rn, capture=[site.name]) as cache:
        rn.encode_image(images)
    assert cache[site.name].shape == (1, 512, 4, 4)


def _n_hooks(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs) for m in model.modules()
    )


def test_hooks_removed_after_exit_and_on_error(vit, rn):
    for model in (vit, rn):
        names = site_names(model)
        replace_name = next(n for n in names if n.endswith("hook_resid_post"))
        forward = _run(model, "visual")
        with torch.no_grad():
            with hooked(model, capture=names, edit={n: (lambda a: a) for n in names}) as cache:
                assert _n_hooks(model) > 0
                forward()
            assert _n_hooks(model) == 0
            assert cache[replace_name].ndim >= 3
            with pytest.raises(RuntimeError, match="boom"):
                with hooked(model, capture=names, replace={replace_name: cache[replace_name]}):
                    assert _n_hooks(model) > 0
                    raise RuntimeError("boom")
            assert _n_hooks(model) == 0


def test_site_names_and_resolve(vit, rn, timm_model):
    assert len(site_names(vit)) == 2 * 2 * 8 and len(site_names(vit, "text")) == 16
    assert len(site_names(rn)) == 4 + 4 + 16
    assert site_names(timm_model) == site_names(timm_model, "visual")
    for model in (vit, rn, timm_model):
        for name in site_names(model):
            site = resolve(model, name)
            assert site.name == name and site.position in ("input", "output")
    site = resolve(vit, "text.blocks.1.hook_mlp_out")
    assert site.module is vit.transformer.resblocks[1].mlp and (site.layer, site.position) == (1, "output")
    assert resolve(vit, "visual.blocks.0.hook_resid_mid").module is vit.visual.transformer.resblocks[0].ln_2
    assert canonical_name(vit, "visual.blocks.-1.hook_mlp_out") == "visual.blocks.1.hook_mlp_out"


def test_unknown_and_out_of_range_names(vit, rn):
    with pytest.raises(ValueError) as error:
        resolve(vit, "visual.blocks.0.hook_nope")
    assert "visual.blocks.{l}.{hook} for l in 0..1" in str(error.value) and "hook_mlp_out" in str(error.value)
    with pytest.raises(ValueError, match=r"layers 0\.\.1"):
        resolve(vit, "visual.blocks.2.hook_mlp_out")
    with pytest.raises(ValueError, match="visual.blocks.1.hook_mlp_out"):
        resolve(vit, "visual.blocks.-1.hook_mlp_out")
    with pytest.raises(ValueError, match="visual.attnpool.hook_alpha"):
        resolve(rn, "visual.blocks.0.attn.hook_z")
    with pytest.raises(ValueError, match="no attention pool"):
        resolve(vit, "visual.attnpool.hook_x")
    with pytest.raises(ValueError, match="towers: visual, text"):
        resolve(vit, "audio.blocks.0.hook_mlp_out")


def test_bad_replacements_and_missing_captures(vit):
    forward = _run(vit, "visual")
    name = "visual.blocks.0.hook_resid_pre"
    with pytest.raises(ValueError, match=r"visual.blocks.0.hook_resid_pre.*\(2, 65, 63\)"):
        with torch.no_grad(), hooked(vit, replace={name: torch.zeros(2, 65, 63)}):
            forward()
    with pytest.raises(ValueError, match="edit of site 'visual.blocks.0.hook_resid_pre'"):
        with torch.no_grad(), hooked(vit, edit={name: lambda a: a[:, 1:]}):
            forward()
    with pytest.raises(TypeError, match="sequence of site names"):
        with hooked(vit, capture=name):
            pass
    with torch.no_grad(), hooked(vit, capture=[name, "text.blocks.0.hook_resid_pre"]) as cache:
        forward()
        assert cache.keys() == [name]
        with pytest.raises(KeyError, match="text.blocks.0.hook_resid_pre"):
            cache["text.blocks.0.hook_resid_pre"]
        with pytest.raises(KeyError, match="not captured"):
            cache["visual.blocks.1.hook_resid_pre"]
        cache.reset()
        with pytest.raises(KeyError, match="did not run"):
            cache[name]
    assert _n_hooks(vit) == 0
