"""evaluate_sae on natural-image datasets (methods.md Sec. 7.4): the tiny Shapes images as photographs in class
folders (an imagefolder) and behind a captions file, their stores, and a random SAE."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hand_saes import random_sae
from toys import COUNTS, shapes_as_photographs

from clipmech.data import datasets, loader, shapes
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.sae import alignment, evaluate
from clipmech.sae.model import save_sae
from clipmech.stores import activation_extraction

SITE = "visual.blocks.1.hook_resid_pre"
RANDOM = ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None)
TEMPLATES = ["a photo of {}.", "a picture of {}."]
PARAMS = {
    "batch_size": 8,
    "split": "all",
    "dense_threshold": 0.1,
    "purity_k": 4,
    "coverage_ap": 0.3,
    "entropy_k": 4,
    "fit_tokens": 300,
    "kmeans_max_clusters": 16,
    "n_figure_latents": 3,
    "n_figure_images": 4,
}


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    """20 Shapes images (4 per object count) as PNGs in one folder per count, indexed both as an imagefolder and,
    with a caption naming the count, as a captions dataset; the store of each."""
    tmp, raw = tmp_path_factory.mktemp("natural-sae"), tmp_path_factory.mktemp("natural-sae-raw")
    synthetic = tmp / "shapes"
    shapes.build(synthetic, shapes.ShapesSpec(n_per_count=4, image_size=64, seed=5))
    data = datasets.load(synthetic)
    directories = shapes_as_photographs(data, raw, tmp, lambda i, count: f"{COUNTS[count - 1]} shapes")
    out = {}
    for kind, directory in directories.items():
        store = activation_extraction.extract(
            RANDOM,
            directory,
            tmp / f"{kind}.zarr",
            sites=("visual.blocks.*.hook_mlp_out", SITE),
            batch_size=8,
            device="cpu",
            code="test-code",
        )
        out[kind] = (directory, store)
    return tmp, out


def _classifier(tmp, directory):
    net, _ = loading.load_model(RANDOM)
    data = datasets.load(directory)
    classnames, templates, provenance = zeroshot.dataset_classifier(RANDOM, data, TEMPLATES)
    weights = zeroshot.classifier(
        net, loading.load_tokenizer(RANDOM), classnames, templates, device="cpu", batch_size=8
    )
    path = tmp / "classifier.npz"
    zeroshot.save_classifier(path, weights, provenance)
    return path


def _evaluate(tmp, directory, store, name, **kwargs):
    from clipmech.stages.evaluate_sae import evaluate_sae

    checkpoint = tmp / f"{name}.pt"
    save_sae(checkpoint, random_sae(64, 128, 8, seed=4), {"site": SITE, "tokens": "all", "holdout_images": [1, 6, 11]})
    out = {key: str(tmp / name / f"{key}.{ext}") for key, ext in (("metrics", "json"), ("latents", "tsv"))}
    out |= {"alignment": str(tmp / name / "alignment.tsv"), "top_latents": str(tmp / name / "top_latents.npz")}
    evaluate_sae(
        model=RANDOM, dataset_dir=str(directory), store=str(store), sae=str(checkpoint), out=out, evaluation=PARAMS,
        seed=0, device="cpu", threads=1, **kwargs,
    )  # fmt: skip
    return out, json.loads(Path(out["metrics"]).read_text())


def test_evaluate_sae_on_an_image_folder(photographs):
    from clipmech.stages.plot_sae_evaluation import plot_sae_evaluation

    tmp, made = photographs
    directory, store = made["imagefolder"]
    data = datasets.load(directory)
    classes = [f"{count} objects" for count in sorted(COUNTS)]
    classifier = _classifier(tmp, directory)
    with pytest.raises(ValueError, match="its downstream metrics need its zero-shot classifier"):
        _evaluate(tmp, directory, store, "missing", natural={"templates": TEMPLATES})
    with pytest.raises(ValueError, match="differing: n_templates, templates_sha256"):
        _evaluate(tmp, directory, store, "other", classifier=str(classifier), natural={"templates": ["a {}"]})
    out, metrics = _evaluate(
        tmp, directory, store, "folder", classifier=str(classifier), natural={"templates": TEMPLATES, "words": None}
    )
    assert metrics["concepts"] == {"source": "folder classes", "n_concepts": 5, "patch_level": False}
    assert metrics["reconstruction"]["n_tokens"] == 3 * 65
    down = metrics["downstream"]
    assert down["n_images"] == 20 and down["n_classes"] == 5 and down["error_term_max_abs_diff"] == 0.0
    zero_shot = pd.DataFrame(down["zero_shot"]).set_index("condition")
    assert list(zero_shot.index) == list(evaluate.CONDITIONS) and set(zero_shot["task"]) == {"class"}
    assert zero_shot.loc["clean", "kl"] == 0.0 and zero_shot.loc["sae_error", "kl"] == 0.0
    assert zero_shot.loc["sae_error", "accuracy"] == zero_shot.loc["clean", "accuracy"]
    assert zero_shot.loc["zero", "kl"] > 0.0
    table = pd.read_csv(out["alignment"], sep="\t")
    assert list(table["method"]) == list(alignment.METHODS) and table["mean_best_auroc_patch"].isna().all()
    assert table["mean_best_auroc_image"].between(0, 1).all() and table["mean_entropy"].between(0, np.log(5)).all()
    assert metrics["alignment"]["sae"]["per_concept"]["concept"] == classes
    assert set(metrics["alignment"]["sae"]["per_concept"]["concept_type"]) == {"class"}
    latents = pd.read_csv(out["latents"], sep="\t")
    assert set(latents.loc[~latents["dead"], "top_concept"]) <= set(classes)
    # The top images are the photographs as the model sees them: here the 64 px images themselves.
    images, maps, titles = alignment.load_top_latents(out["top_latents"])
    assert images.shape == (3, 4, 64, 64, 3) and maps.shape == (3, 4, 8, 8) and len(titles) == 3
    flat = data.manifest  # each shown image is one of the dataset's photographs, decoded unchanged
    photos = loader.ModelViewImages(data, 64)[np.arange(len(flat))]
    for image in images.reshape(-1, 64, 64, 3):
        assert any(np.array_equal(image, photo) for photo in photos)
    figures = {"histogram": str(tmp / "folder" / "histogram.png"), "top_images": str(tmp / "folder" / "top.png")}
    plot_sae_evaluation(
        metrics=out["metrics"], top_latents=out["top_latents"], out=figures, dense_threshold=0.1, label="test"
    )
    assert all(Path(figure).read_bytes()[:4] == b"\x89PNG" for figure in figures.values())


def test_evaluate_sae_on_captions_leaves_the_downstream_out(photographs, caplog):
    tmp, made = photographs
    directory, store = made["captions"]
    with caplog.at_level(logging.WARNING, logger="clipmech.stages.evaluate_sae"):
        out, metrics = _evaluate(
            tmp, directory, store, "captions", natural={"templates": None, "words": ["two", "five"]}
        )
    down = metrics["downstream"]
    assert down["skipped"] is True and "kind captions, which has no single class per image" in down["reason"]
    assert [r.getMessage() for r in caplog.records if "no downstream" in r.getMessage()] == [down["reason"]]
    assert metrics["concepts"] == {"source": "caption words", "n_concepts": 2, "patch_level": False}
    assert metrics["alignment"]["sae"]["per_concept"]["concept"] == ["two", "five"]
    assert pd.read_csv(out["alignment"], sep="\t")["mean_best_auroc_patch"].isna().all()


def test_class_labels_and_prompts():
    labelled, labels = evaluate.class_labels(np.array([2, -1, 0, 1, -1]), np.array([4, 0, 1, 3]))
    np.testing.assert_array_equal(labelled, [0, 3]) and np.testing.assert_array_equal(labels["class"], [2, 1])
    texts = evaluate.class_prompts(np.arange(6, dtype=np.float32).reshape(3, 2))
    assert texts["class"].shape == (2, 3) and texts["class"].dtype == torch.float32


def test_downstream_reads_batches_as_a_tensor(tiny_vit):
    """Streamed batches (a natural-image dataset) give the table a whole tensor gives, over any prompts."""
    model, _ = tiny_vit
    pixels = torch.randn(6, 3, 64, 64)
    texts = {"class": torch.nn.functional.normalize(torch.randn(4, model.text_projection.shape[1]), dim=-1)}
    labels = {"class": np.array([0, 1, 2, 3, 0, 1])}
    kwargs = dict(
        sae=random_sae(64, 128, 8, seed=1), site=SITE, positions=np.arange(65), mean_D=np.zeros(64), batch_size=4,
        device="cpu", texts=texts,
    )  # fmt: skip
    whole = evaluate.downstream(model, None, pixels, labels, **kwargs)
    streamed = evaluate.downstream(model, None, iter([pixels[:4], pixels[4:]]), labels, **kwargs)
    assert whole["n_images"] == streamed["n_images"] == 6
    pd.testing.assert_frame_equal(whole["zero_shot"], streamed["zero_shot"])
    with pytest.raises(ValueError, match="downstream metrics of zero images"):
        evaluate.downstream(model, None, iter([]), labels, **kwargs)
