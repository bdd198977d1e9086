"""Zero-shot classification over a dataset's classes (clipmech.models.zeroshot, methods.md Sec. 1.2): templates,
the classifier against a direct computation, its cached provenance, and top-k accuracy on planted features."""

import math

import numpy as np
import open_clip
import pytest
import torch

from clipmech.models import loading, zeroshot

CLASSES = ("cat", "dog", "red fish")
TEMPLATES = ("a photo of a {}.", "a drawing of the {}.", "{}")


@pytest.fixture(scope="module")
def tokenizer():
    return open_clip.get_tokenizer("clipmech-vit-tiny")


def test_imagenet_templates_and_classes():
    templates = zeroshot.templates("imagenet")
    assert len(templates) == 80
    assert templates[0] == "a bad photo of a {}."
    assert zeroshot.templates("captions", templates) == templates  # every one is a valid format string
    assert len(open_clip.IMAGENET_CLASSNAMES) == 1000


def test_configured_templates_replace_the_default():
    assert zeroshot.templates("imagefolder", ["a photo of a {}."]) == ("a photo of a {}.",)
    assert zeroshot.templates("imagenet", ["itap of a {}", "{{x}} {}"]) == ("itap of a {}", "{{x}} {}")


@pytest.mark.parametrize(
    "configured",
    [None, [], "a photo of a {}.", ["a photo"], ["{} and {}"], ["a {0}"], ["a {name}"], ["a {:>3}"], ["a {"], [3]],
)
def test_bad_templates_raise(configured):
    with pytest.raises(ValueError, match="template"):
        zeroshot.templates("imagefolder", configured)


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_classifier_is_the_normalised_mean_of_normalised_prompts(vit, tokenizer, batch_size):
    weights_EK = zeroshot.classifier(vit, tokenizer, CLASSES, TEMPLATES, device="cpu", batch_size=batch_size)
    assert weights_EK.dtype == torch.float32
    assert weights_EK.shape == (vit.text_projection.shape[1], len(CLASSES))
    columns = []
    for name in CLASSES:
        prompts = [template.format(name) for template in TEMPLATES]
        mean = loading.encode_text(vit, tokenizer, prompts).mean(dim=0)
        columns.append(mean / mean.norm())
    torch.testing.assert_close(weights_EK, torch.stack(columns, dim=1).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(weights_EK.norm(dim=0), torch.ones(len(CLASSES)), rtol=0, atol=1e-6)


def test_classifier_refuses_empty_inputs(vit, tokenizer):
    with pytest.raises(ValueError, match="classes and templates"):
        zeroshot.classifier(vit, tokenizer, [], TEMPLATES, device="cpu", batch_size=8)


def planted(n_classes=7, dim=16):
    """Features whose scores against the identity-like weights rank the classes in a known order."""
    weights_EK = torch.eye(dim)[:, :n_classes]
    # image 0: class 0 first; image 1: class 2 second; image 2: class 4 fifth; image 3: class 6 last (7th);
    # image 4: unlabelled
    scores = [
        [9, 1, 1, 1, 1, 1, 1],
        [9, 1, 5, 1, 1, 1, 1],
        [9, 8, 7, 6, 1, 0, 0],
        [9, 8, 7, 6, 5, 0.5, 0.4],
        [9, 0, 0, 0, 0, 0, 0],
    ]
    features_NE = torch.zeros(len(scores), dim)
    features_NE[:, :n_classes] = torch.tensor(scores, dtype=torch.float32)
    features_NE[:, -1] = 3.0  # a component outside the classes' span: normalisation must not change ranks
    labels_N = np.array([0, 2, 4, 6, -1])
    return features_NE, weights_EK, labels_N


def test_accuracy_on_planted_features():
    features_NE, weights_EK, labels_N = planted()
    result = zeroshot.accuracy(features_NE, weights_EK, labels_N)
    # top-1: image 0 only; top-5: images 0, 1 (2nd), 2 (5th); not image 3 (7th)
    assert result == {"n": 4, "n_unlabelled": 1, "top1": 0.25, "top5": 0.75}
    assert zeroshot.accuracy(features_NE.numpy(), weights_EK.numpy(), labels_N, topk=(6, 7)) == {
        "n": 4,
        "n_unlabelled": 1,
        "top6": 0.75,
        "top7": 1.0,
    }


def test_accuracy_caps_k_at_the_number_of_classes():
    features_NE, weights_EK, labels_N = planted()
    weights_EK, labels_N = weights_EK[:, :3], np.array([0, 2, 1, 1, -1])
    result = zeroshot.accuracy(features_NE, weights_EK, labels_N)
    assert result["top5"] == 1.0
    assert result["top1"] == 0.25  # image 0 ranks its class first, images 1-3 second


def test_accuracy_without_labelled_images_is_nan():
    features_NE, weights_EK, _ = planted()
    result = zeroshot.accuracy(features_NE, weights_EK, -np.ones(len(features_NE), dtype=np.int64))
    assert math.isnan(result["top1"]) and result["n"] == 0 and result["n_unlabelled"] == len(features_NE)


def test_accuracy_refuses_bad_labels():
    features_NE, weights_EK, labels_N = planted()
    labels_N[0] = 7
    with pytest.raises(ValueError, match="-1..6"):
        zeroshot.accuracy(features_NE, weights_EK, labels_N)


def test_save_and_load_check_provenance(tmp_path):
    weights_EK = torch.randn(8, 3)
    provenance = zeroshot.classifier_provenance("clipmech-vit-tiny", "random-init:seed0", CLASSES, TEMPLATES)
    path = tmp_path / "zeroshot" / "classifier.npz"
    zeroshot.save_classifier(path, weights_EK, provenance)
    assert sorted(p.name for p in path.parent.iterdir()) == ["classifier.npz", "classifier.npz.sha256"]
    loaded = zeroshot.load_classifier(path, provenance)
    assert loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, weights_EK, rtol=0, atol=0)

    renamed = zeroshot.classifier_provenance(
        "clipmech-vit-tiny", "random-init:seed0", ("cat", "dog", "fish"), TEMPLATES
    )
    with pytest.raises(ValueError, match="classnames_sha256") as error:
        zeroshot.load_classifier(path, renamed)
    assert renamed["classnames_sha256"] in str(error.value) and provenance["classnames_sha256"] in str(error.value)
    other_weights = zeroshot.classifier_provenance("clipmech-vit-tiny", "sha256:00", CLASSES, TEMPLATES)
    with pytest.raises(ValueError, match="weights_id"):
        zeroshot.load_classifier(path, other_weights)
    other_templates = zeroshot.classifier_provenance("clipmech-vit-tiny", "random-init:seed0", CLASSES, TEMPLATES[:2])
    with pytest.raises(ValueError, match="templates_sha256"):
        zeroshot.load_classifier(path, other_templates)
    with pytest.raises(FileNotFoundError):
        zeroshot.load_classifier(tmp_path / "missing.npz", provenance)


def test_a_garbled_or_truncated_classifier_is_refused(tmp_path):
    provenance = zeroshot.classifier_provenance("clipmech-vit-tiny", "random-init:seed0", CLASSES, TEMPLATES)
    path = tmp_path / "classifier.npz"
    zeroshot.save_classifier(path, torch.randn(8, 3), provenance)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"classifier\.npz is corrupt: it was garbled.*rule zero_shot_classifier"):
        zeroshot.load_classifier(path, provenance)
    zeroshot.save_classifier(path, torch.randn(8, 3), provenance)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"classifier\.npz is corrupt: it is truncated"):
        zeroshot.load_classifier(path, provenance)
    with pytest.raises(ValueError, match="not finite"):
        zeroshot.save_classifier(path, torch.full((8, 3), float("nan")), provenance)


def test_batched_predictions_give_the_accuracy_of_the_whole():
    rng = np.random.default_rng(4)
    features, weights = rng.normal(size=(50, 8)), rng.normal(size=(8, 7))
    weights /= np.linalg.norm(weights, axis=0)
    labels = rng.integers(-1, 7, size=50)
    top = np.concatenate([zeroshot.predict(features[i : i + 16], weights, 5).numpy() for i in range(0, 50, 16)])
    assert top.shape == (50, 5)
    assert zeroshot.topk_accuracy(top, labels, 7, (1, 5)) == zeroshot.accuracy(features, weights, labels, (1, 5))
    with pytest.raises(ValueError, match="needs that many ranked classes"):
        zeroshot.topk_accuracy(top[:, :3], labels, 7, (1, 5))
