import pytest
import torch

from clipmech.hooks.mlp import capture_mlp_outputs, reduce_tokens, vision_blocks


def _n_hooks(model):
    return sum(len(block.mlp._forward_hooks) for block in model.visual.transformer.resblocks)


def test_capture_shapes_and_values(tiny_vit):
    model, _ = tiny_vit
    pixels = torch.randn(3, 3, 64, 64)
    blocks = vision_blocks(model)
    assert blocks.grid == (8, 8) and blocks.n_tokens == 65 and blocks.width == 64
    with torch.inference_mode(), capture_mlp_outputs(model) as capture:
        model.encode_image(pixels)
        acts = capture.stacked()
    assert acts.shape == (3, 2, 65, 64)
    # Independent check: the second block's MLP output recomputed from its input.
    block = model.visual.transformer.resblocks[1]
    inputs = {}
    handle = block.register_forward_hook(lambda m, args, out: inputs.setdefault("x", args[0]))
    with torch.inference_mode():
        model.encode_image(pixels)
        handle.remove()
        x = inputs["x"]
        x = x + block.ls_1(block.attention(q_x=block.ln_1(x)))
        expected = block.mlp(block.ln_2(x))
    torch.testing.assert_close(acts[:, 1], expected)
    assert _n_hooks(model) == 0


def test_hooks_removed_on_error(tiny_vit):
    model, _ = tiny_vit
    with pytest.raises(RuntimeError, match="boom"):
        with capture_mlp_outputs(model, layers=[0]):
            assert _n_hooks(model) == 1
            raise RuntimeError("boom")
    assert _n_hooks(model) == 0


def test_bad_layer_and_missing_capture(tiny_vit):
    model, _ = tiny_vit
    with pytest.raises(IndexError, match="has 2 blocks"):
        with capture_mlp_outputs(model, layers=[2]):
            pass
    with capture_mlp_outputs(model, layers=[0]) as capture:
        with pytest.raises(RuntimeError, match="no MLP output captured"):
            capture.stacked()


def test_reductions():
    acts = torch.arange(2 * 1 * 4 * 3, dtype=torch.float32).reshape(2, 1, 4, 3)
    torch.testing.assert_close(reduce_tokens(acts, "cls", 1), acts[:, :, 0])
    torch.testing.assert_close(reduce_tokens(acts, "mean", 1), acts[:, :, 1:].mean(2))
    torch.testing.assert_close(reduce_tokens(acts, "max", 1), acts[:, :, 3])
    with pytest.raises(ValueError, match="valid reductions"):
        reduce_tokens(acts, "median", 1)
    with pytest.raises(ValueError, match="class token"):
        reduce_tokens(acts, "cls", 0)
