"""Training-free segmentation from the decomposition (clipmech.decomposition.segmentation), its
``objects_only`` scoring of Shapes (argmax over the classes on object pixels, methods.md Sec. 5) and the
PASCAL Context-59 stage on a dataset of kind pascal_context indexed from a fake copy in mmseg's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from toys import fake_pascal_context, random_attnpool_weights

from clipmech.data import datasets, natural
from clipmech.decomposition import pool, segmentation
from clipmech.decomposition.miou import confusion_matrix, mean_iou
from clipmech.models.loading import ModelSpec
from clipmech.stages.segment_pascal_context import segment_pascal_context

H, C, E, GRID = 2, 8, 5, (2, 2)
T = GRID[0] * GRID[1] + 1


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    weights = random_attnpool_weights(rng, T, C, E, H)
    a_NTC = np.abs(rng.standard_normal((3, T, C)))
    x_NTC = a_NTC + weights.positional_embedding[None]
    alpha_NHT = rng.dirichlet(np.ones(T), size=(3, H))
    z_KE = rng.standard_normal((3, E))
    return weights, x_NTC, a_NTC, alpha_NHT, z_KE


def _head_map(weights, x_t, alpha_ht, h, z):
    d = C // H
    v = weights.v_weight[h * d : (h + 1) * d] @ x_t
    return alpha_ht * (weights.c_weight[:, h * d : (h + 1) * d] @ v) @ (z / np.linalg.norm(z))


def test_token_logits_match_explicit_formulas(toy):
    weights, x_NTC, a_NTC, alpha_NHT, z_KE = toy
    u_HCE, bias_E = pool.neuron_head_directions(weights), pool.output_bias(weights)
    top = [[(0, 1), (1, 1), (1, 5)], [(1, 0), (0, 7), (0, 2)], [(0, 3), (1, 6), (1, 3)]]  # (head, neuron) per class
    heads = np.array([[p[0] for p in row] for row in top])
    neurons = np.array([[p[1] for p in row] for row in top])
    w_KHC = segmentation.pair_weights(heads, neurons, H, C)
    assert w_KHC.sum() == 9 and w_KHC[1, 0, 7] == 1
    got = {
        m: segmentation.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, m)
        for m in segmentation.METHODS
    }
    for method in segmentation.METHODS:
        assert got[method].shape == (3, 3, T - 1)
    for n in range(3):
        for c in range(3):
            for s in range(T - 1):
                t = s + 1
                head_maps = [_head_map(weights, x_NTC[n, t], alpha_NHT[n, h, t], h, z_KE[c]) for h in range(H)]
                assert got["heads"][n, c, s] == pytest.approx(sum(head_maps[hh] for hh, _ in top[c]))
                assert got["neurons"][n, c, s] == pytest.approx(sum(a_NTC[n, t, nn] for _, nn in top[c]))
                assert got["pairs"][n, c, s] == pytest.approx(sum(a_NTC[n, t, nn] * head_maps[hh] for hh, nn in top[c]))
                dense = weights.c_weight @ (weights.v_weight @ a_NTC[n, t] + weights.v_bias) + weights.c_bias
                cos = dense @ z_KE[c] / np.linalg.norm(dense) / np.linalg.norm(z_KE[c])
                assert got["maskclip"][n, c, s] == pytest.approx(cos)
    # with every pair selected, the head method is C times the aggregated map sum_h M_c^h
    everything = np.ones((3, H, C))
    aggregated = np.einsum(
        "nhtk->nkt", pool.token_head_maps(x_NTC, alpha_NHT, u_HCE, z_KE / np.linalg.norm(z_KE, axis=1, keepdims=True))
    )
    np.testing.assert_allclose(
        segmentation.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, everything, "heads"),
        C * aggregated[:, :, 1:],
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="valid methods"):
        segmentation.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, "selfself")


def test_upsample_and_background_threshold():
    logits = np.array([[[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]]])  # (1, 2 classes, 2 x 2 tokens)
    up = segmentation.upsample(logits, (2, 2), (4, 4))
    assert up.shape == (1, 2, 4, 4)
    assert up[0, 0, 0, 0] == pytest.approx(0.0) and up[0, 0, -1, -1] == pytest.approx(3.0)
    pred = segmentation.predict_with_background(logits.reshape(1, 2, 2, 2), threshold=0.7)
    # normalised best logit: 1, 2/3, 2/3, 1 -> the two middle tokens are background
    assert pred.tolist() == [[[2, 0], [0, 1]]]
    assert (segmentation.predict_with_background(logits.reshape(1, 2, 2, 2), threshold=0.0) > 0).all()


def test_shapes_ground_truth_and_confusions(tiny_dataset):
    data = datasets.load(tiny_dataset)
    images = np.array([0, 5, 9])
    gt = segmentation.shapes_ground_truth(
        data.masks, data.objects, images, "colour", ("red", "green", "blue", "pink", "black", "yellow")
    )
    assert gt.shape == (3, 64, 64)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(gt[i] == 0, data.masks[image] == 0)
        for _, obj in data.objects[data.objects["image_id"] == image].iterrows():
            labels = np.unique(gt[i][data.masks[image] == obj["object_id"]])
            assert labels.tolist() == [("red", "green", "blue", "pink", "black", "yellow").index(obj["colour"]) + 1]
    one_hot = (np.arange(1, 7)[None, :, None, None] == gt[:, None]).astype(float)
    cms = segmentation.shapes_confusions(gt, one_hot, gt)
    assert np.trace(cms["with_background"]) == gt.size
    assert cms["objects_only"][0].sum() == 0 and cms["objects_only"].sum() == (gt > 0).sum()


def test_slide_windows_follow_mmseg():
    assert segmentation.slide_windows(384, 512, 384, 192) == [(0, 384, 0, 384), (0, 384, 128, 512)]
    boxes = segmentation.slide_windows(500, 400, 384, 192)
    assert boxes == [(0, 384, 0, 384), (0, 384, 16, 400), (116, 500, 0, 384), (116, 500, 16, 400)]
    assert segmentation.slide_windows(100, 90, 128, 64) == [(0, 100, 0, 90)]
    with pytest.raises(ValueError):
        segmentation.slide_windows(10, 10, 0, 1)


def test_slide_logits_average_overlaps():
    image = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(2, 5, 7)
    out = segmentation.slide_logits(
        image, 4, 2, lambda crop: {"copy": crop.numpy().astype(np.float64), "ones": np.ones((1, 4, 4))}
    )
    np.testing.assert_allclose(out["copy"], image.numpy())  # every window sees the same pixel values
    np.testing.assert_allclose(out["ones"], 1.0)
    small = segmentation.slide_logits(image[:, :3, :3], 4, 2, lambda crop: {"copy": crop.numpy().astype(np.float64)})
    np.testing.assert_allclose(small["copy"], image[:, :3, :3].numpy())  # zero padding is cut off again


def test_rescale_size_is_mmcv_keep_ratio():
    assert segmentation.rescale_size(375, 500, (2048, 384)) == (384, 512)
    assert segmentation.rescale_size(500, 375, (2048, 384)) == (512, 384)
    assert segmentation.rescale_size(100, 2000, (2048, 384)) == (102, 2048)  # the long side binds


def test_pascal_context_stage_reads_a_pascal_context_dataset(tmp_path):
    root = fake_pascal_context(tmp_path / "VOC2010", ["2008_000002", "2008_000007"], classes=range(60))
    natural.write_natural_dataset(tmp_path / "data", {"kind": "pascal_context", "root": str(root)})
    out = {"miou": str(tmp_path / "out" / "miou.tsv"), "iou": str(tmp_path / "out" / "iou.tsv")}
    params = {"scale": [512, 128], "crop_size": 128, "stride": 64, "logit_scale": 40.0, "top_k": 50}
    arguments = dict(model=ModelSpec("rn", "clipmech-rn-tiny", None), out=out, device="cpu", threads=1, label="rn")
    segment_pascal_context(dataset_dir=str(tmp_path / "data"), pascal_context=params, **arguments)
    miou = pd.read_csv(out["miou"], sep="\t")
    assert list(miou["method"]) == list(segmentation.METHODS) and (miou["n_images"] == 2).all()
    assert miou["miou"].between(0, 1).all()
    iou = pd.read_csv(out["iou"], sep="\t")
    assert len(iou) == 4 * 59 and iou["class"].iloc[:59].tolist() == list(natural.PASCAL_CONTEXT_59)
    with pytest.raises(ValueError, match="crop_size"):
        segment_pascal_context(
            dataset_dir=str(tmp_path / "data"), pascal_context={**params, "crop_size": 96}, **arguments
        )
    # A mask replaced by one of another size after indexing is named.
    Image.fromarray(np.zeros((90, 100), dtype=np.uint8)).save(root / "SegmentationClassContext" / "2008_000007.png")
    with pytest.raises(ValueError, match=r"2008_000007.png has shape \(90, 100\) but its image has \(90, 120\)"):
        segment_pascal_context(dataset_dir=str(tmp_path / "data"), pascal_context=params, **arguments)
    folder = tmp_path / "folder"
    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a" / "x.png")
    natural.write_natural_dataset(tmp_path / "folder-data", {"kind": "imagefolder", "root": str(folder)})
    with pytest.raises(ValueError, match="is a dataset of kind imagefolder; .* needs one of kind pascal_context"):
        segment_pascal_context(dataset_dir=str(tmp_path / "folder-data"), pascal_context=params, **arguments)


def _logits():
    """One 2 x 3 image, K = 2 classes; logits (class 0, class 1) per pixel."""
    class0 = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.8]])
    class1 = np.array([[0.1, 0.4, 0.5], [0.2, 0.7, 0.05]])
    return np.stack([class0, class1])[None]  # (1, 2, 2, 3)


def test_objects_only_is_the_argmax_over_classes_on_object_pixels_hand_computed():
    logits = _logits()
    gt = np.array([[[1, 1, 0], [2, 2, 1]]])
    pred = segmentation.predict_with_background(logits, threshold=0.5)
    # min 0.05, max 0.9: normalised best logits 1, 0.41, 0.65, 0.18, 0.76, 0.88 -> two background pixels
    assert pred.tolist() == [[[1, 0, 1], [0, 2, 1]]]
    cms = segmentation.shapes_confusions(pred, logits, gt)
    # argmax + 1 = [[1, 2, 1], [2, 2, 1]]; object pixels: gt 1 -> 1, 2, 1; gt 2 -> 2, 2
    assert cms["objects_only"].tolist() == [[0, 0, 0], [0, 2, 1], [0, 0, 2]]
    # class 1: I = 2, U = 3 + 2 - 2 = 3; class 2: I = 2, U = 2 + 3 - 2 = 3; background absent (nan, left out)
    assert mean_iou(cms["objects_only"]) == pytest.approx(2 / 3)
    # with_background is the thresholded prediction on all pixels, as before
    np.testing.assert_array_equal(cms["with_background"], confusion_matrix(pred, gt, 3))
    assert cms["with_background"].tolist() == [[0, 1, 0], [1, 2, 0], [1, 0, 1]]


def test_objects_only_ignores_the_background_threshold():
    """The thresholded prediction puts object pixels into background (the old scoring counted them as
    misses); objects_only must score them by their argmax and reach mIoU 1 when every argmax is right."""
    logits = _logits()
    gt = logits.argmax(axis=1) + 1
    pred = segmentation.predict_with_background(logits, threshold=0.95)
    assert (pred == 0).sum() == 5
    cms = segmentation.shapes_confusions(pred, logits, gt)
    assert cms["objects_only"][0].sum() == 0 and cms["objects_only"][:, 0].sum() == 0
    assert np.trace(cms["objects_only"]) == gt.size
    assert mean_iou(cms["objects_only"]) == 1.0
    assert mean_iou(cms["with_background"]) < 0.5


def test_objects_only_does_not_depend_on_the_threshold():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6, 5))
    gt = rng.integers(0, 5, size=(3, 6, 5))
    scores = [
        segmentation.shapes_confusions(segmentation.predict_with_background(logits, t), logits, gt)["objects_only"]
        for t in (0.0, 0.5, 0.9)
    ]
    for cm in scores[1:]:
        np.testing.assert_array_equal(cm, scores[0])
    assert scores[0].sum() == (gt > 0).sum()


def test_segment_shapes_writes_the_examples_plot_segmentation_draws(tmp_path, tiny_dataset):
    """The stage writes tables and the figures' examples (no figure code runs in it); rule
    plot_segmentation draws the heatmaps and masks from those examples."""
    from clipmech import artefacts
    from clipmech.models import zeroshot
    from clipmech.stages.plot_segmentation import plot_segmentation
    from clipmech.stages.segment_shapes import load_examples, segment_shapes
    from clipmech.stores import attnpool_extraction

    store = attnpool_extraction.extract_attnpool(
        ModelSpec("rand-rn", "clipmech-rn-tiny", None), tiny_dataset, tmp_path / "a.zarr", device="cpu", code="c"
    )
    tasks, classes = [], []
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, _ = zeroshot.attribute_prompts(task)
        tasks += [task] * len(names)
        classes += list(names)
    embeddings = np.random.default_rng(0).standard_normal((len(classes), 64)).astype(np.float32)
    text = tmp_path / "embeddings.npz"
    artefacts.save_npz(
        text,
        rule="embed_text",
        prompt_task=np.array(tasks),
        prompt_class=np.array(classes),
        prompt_embeddings=embeddings,
    )
    out = {"miou": str(tmp_path / "miou.tsv"), "iou": str(tmp_path / "iou.tsv"), "examples": str(tmp_path / "ex.npz")}
    segment_shapes(
        store=str(store),
        dataset_dir=str(tiny_dataset),
        text_path=str(text),
        out=out,
        segmentation={"top_k": 8, "background_threshold": 0.5, "n_figure_images": 3},
        chunk_size=4,
        seed=0,
    )
    assert len(pd.read_csv(out["miou"], sep="\t")) == 2 * len(segmentation.METHODS) * 2
    shown = load_examples(out["examples"])
    assert shown["images"].shape == (3, 64, 64, 3) and (shown["n_pairs"], shown["background_threshold"]) == (8, 0.5)
    assert [block["task"] for block in shown["blocks"]] == list(segmentation.SEGMENTED_TASKS)
    colour = shown["blocks"][0]
    assert shown["heatmaps"].shape == (3, len(colour["classes"]), 64, 64)
    for block in shown["blocks"]:
        assert list(block["preds"]) == list(segmentation.METHODS) and block["gt"].shape == (3, 64, 64)
        assert all(pred.shape == (3, 64, 64) for pred in block["preds"].values())
    figures = {"heatmaps": str(tmp_path / "heatmaps.png"), "masks": str(tmp_path / "masks.png")}
    plot_segmentation(examples=out["examples"], out=figures, label="test")
    assert all((tmp_path / f"{name}.png").stat().st_size > 1000 for name in figures)
