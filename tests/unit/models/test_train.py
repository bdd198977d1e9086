import numpy as np
import pytest
import torch

from clipmech.models import train, zeroshot
from clipmech.models.loading import ModelSpec

TINY = train.TrainConfig(steps=3, batch_size=8, warmup_steps=1, image_size=64, n_heldout=10, seed=4)


def test_training_is_deterministic_and_checkpoint_loads(tmp_path):
    torch.set_num_threads(1)
    records = []
    for run in ("a", "b"):
        d = tmp_path / run
        d.mkdir()
        records.append(
            train.train_and_save(
                ModelSpec("t", "clipmech-vit-tiny", None), TINY, d / "ck.pt", d / "m.json", d / "l.tsv"
            )
        )
    assert (tmp_path / "a" / "l.tsv").read_text() == (tmp_path / "b" / "l.tsv").read_text()
    assert records[0]["checkpoint_sha256"] == records[1]["checkpoint_sha256"]
    metrics = records[0]["zero_shot"]
    for key in ("colour", "shape", "position", "binding_colour_swap"):
        assert 0.0 <= metrics[key] <= 1.0


def test_swap_prompts():
    objects = [{"shape": "square", "colour": "red"}, {"shape": "circle", "colour": "blue"}]
    assert zeroshot.colour_swap_prompts(objects) == (
        "a red square and a blue circle",
        "a blue square and a red circle",
    )
    with pytest.raises(ValueError, match="distinct colours"):
        zeroshot.colour_swap_prompts([objects[0], {"shape": "circle", "colour": "red"}])


def test_classify_and_preference():
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[0.0, 1.0], [3.0, 0.1]])
    np.testing.assert_array_equal(zeroshot.classify(images, texts), [1, 0])
    np.testing.assert_array_equal(zeroshot.pairwise_preference(images, texts[[1, 1]], texts[[0, 0]]), [True, False])
    with pytest.raises(ValueError, match="valid tasks"):
        zeroshot.attribute_prompts("size")


def test_twin_scenes_are_hard_negatives():
    rng = np.random.default_rng(0)
    for n_objects in (1, 2, 3, 5):
        for _ in range(30):
            objects = train.shapes.sample_objects(rng, n_objects, 64)
            twin = train.twin_scene(rng, objects)
            geometry = [(o["position"], o["cx"], o["cy"], o["radius"]) for o in objects]
            assert [(o["position"], o["cx"], o["cy"], o["radius"]) for o in twin] == geometry
            shapes_differ = [o["shape"] for o in twin] != [o["shape"] for o in objects]
            colours_swapped = sorted(o["colour"] for o in twin) == sorted(o["colour"] for o in objects) and [
                o["colour"] for o in twin
            ] != [o["colour"] for o in objects]
            assert shapes_differ != colours_swapped  # exactly one kind of change
            assert train.shapes.caption(twin) != train.shapes.caption(objects)


def test_render_batch_places_twins_next_to_their_scene():
    images, scenes = train.render_batch(np.random.default_rng(1), 16, 48, [2, 3], p_twin=1.0)
    assert images.shape == (16, 48, 48, 3)
    for first, second in zip(scenes[0::2], scenes[1::2]):
        assert [o["position"] for o in first] == [o["position"] for o in second]


def test_a_missing_hugging_face_tokenizer_fails_before_training(offline_hub, monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("train() built the model before it had the tokenizer")

    monkeypatch.setattr(train.open_clip, "create_model_and_transforms", build)
    with pytest.raises(FileNotFoundError, match="'timm/ViT-B-16-SigLIP'.*not in the local Hugging Face cache"):
        train.train("ViT-B-16-SigLIP", TINY)
