import json

import open_clip
import pytest
import torch
from PIL import Image

from clipmech.models import loading


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ValueError, match="valid architectures are: .*ViT-L-14"):
        loading.ModelSpec("m", "ViT-Q-99", None)


def test_missing_checkpoint_names_the_path(tmp_path):
    spec = loading.ModelSpec("m", "clipmech-vit-tiny", str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        loading.load(spec)


def test_local_checkpoint_round_trip(tmp_path, tiny_vit):
    model, _ = tiny_vit
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    spec = loading.ModelSpec("m", "clipmech-vit-tiny", str(path))
    loaded, preprocess, tokenizer = loading.load(spec)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encode_image(pixels), model.encode_image(pixels))
    assert tokenizer(["a red square"]).shape == (1, 48)  # context length from the model config
    assert loading.weights_id(spec).startswith("sha256:")


def test_size_overrides_resize_the_model_its_transform_and_its_tokenizer():
    spec = loading.ModelSpec("m", "clipmech-vit-tiny", None, image_size=32, context_length=8)
    model, preprocess, tokenizer = loading.load(spec)
    assert preprocess(Image.new("RGB", (50, 40))).shape == (3, 32, 32)
    tokens = tokenizer(["a red square on the left and a blue circle on the right"])
    assert tokens.shape == (1, 8)
    with torch.inference_mode():
        assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 64)
        assert model.encode_text(tokens).shape == (1, 64)
    assert model.visual.positional_embedding.shape == (1 + 4 * 4, 64)  # 32 / 8 patches a side, and the class token


def test_open_clip_tags_are_not_paths():
    assert not loading.ModelSpec("m", "ViT-L-14", "openai").is_local_checkpoint
    assert loading.ModelSpec("m", "ViT-L-14", "results/models/m/checkpoint.pt").is_local_checkpoint
    assert "clipmech-vit-tiny" in open_clip.list_models()


def test_corrupt_checkpoint_names_the_file(tmp_path, tiny_vit):
    model, _ = tiny_vit
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="cannot load checkpoint .*ck.pt"):
        loading.load(loading.ModelSpec("m", "clipmech-vit-tiny", str(path)))


def _garble(path, offset=4096):
    """Flip the bits of 64 bytes in the middle of the tensor data: same size, still unpicklable."""
    data = bytearray(path.read_bytes())
    middle = max(offset, len(data) // 2)
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def test_garbled_trained_checkpoint_fails_against_its_training_record(tmp_path, tiny_vit):
    """A same-size garbled checkpoint loads silently in torch (the failure this guards against, checked
    first), so the sha256 recorded beside a pipeline-trained checkpoint is compared before loading."""
    model, _ = tiny_vit
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    recorded = loading.file_sha256(path)
    (tmp_path / "metrics.json").write_text(json.dumps({"checkpoint_sha256": recorded}))
    spec = loading.ModelSpec("m", "clipmech-vit-tiny", str(path))
    loading.load(spec)  # the intact file passes
    _garble(path)
    assert path.stat().st_size == len(path.read_bytes())
    torch.load(path, weights_only=True)  # torch notices nothing
    with pytest.raises(
        ValueError,
        match=rf"checkpoint .*checkpoint.pt has sha256 [0-9a-f]{{64}}, but .*metrics.json records {recorded}",
    ):
        loading.load(spec)


def test_configured_sha256_is_checked_and_needs_a_local_file(tmp_path, tiny_vit):
    model, _ = tiny_vit
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    with pytest.raises(ValueError, match=r"models.m.sha256 in the config records 0{64}"):
        loading.load(loading.ModelSpec("m", "clipmech-vit-tiny", str(path), sha256="0" * 64))
    loading.load(loading.ModelSpec("m", "clipmech-vit-tiny", str(path), sha256=loading.file_sha256(path).upper()))
    with pytest.raises(ValueError, match="`sha256` checks a local checkpoint file"):
        loading.ModelSpec("m", "ViT-B-32", "openai", sha256="0" * 64)


def test_cuda_without_cuda_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="extraction.device is 'cuda', but torch finds no CUDA device"):
        loading.resolve_device("cuda")
    assert loading.resolve_device("auto").type == "cpu"
    assert loading.resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("architecture", ["clipmech-vit-tiny", "clipmech-rn-tiny"])
def test_batched_preprocess_matches_the_eval_transform(architecture):
    """Training's batched resize equals open_clip's PIL transform to within one grey level."""
    from clipmech.data import shapes
    from clipmech.models import train

    model, _, preprocess = open_clip.create_model_and_transforms(architecture)
    images, _ = train.render_batch(shapes.stream(0, 7), 8, 224, [1, 5])
    reference = loading.preprocess_images(images, preprocess)
    batched = loading.preprocess_square_batch(images, model.visual.preprocess_cfg)
    assert batched.shape == reference.shape and batched.dtype == torch.float32
    one_level = 1 / 255 / min(model.visual.preprocess_cfg["std"])
    assert (batched - reference).abs().max() <= one_level + 1e-6
    assert (batched - reference).abs().mean() < 0.01 * one_level


def test_batched_preprocess_rejects_non_square_images():
    import numpy as np

    cfg = {"size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic"}
    with pytest.raises(ValueError, match="square RGB"):
        loading.preprocess_square_batch(np.zeros((2, 32, 48, 3), np.uint8), cfg)
