"""Training-free segmentation from the decomposition (clipmech.decomposition.segmentation) and the PASCAL
Context-59 stage on a fake copy in mmseg's on-disk layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from toys import random_attnpool_weights

from clipmech.data import datasets
from clipmech.decomposition import pool as dec
from clipmech.decomposition import segmentation as ps
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
    u_HCE, bias_E = dec.neuron_head_directions(weights), dec.output_bias(weights)
    top = [[(0, 1), (1, 1), (1, 5)], [(1, 0), (0, 7), (0, 2)], [(0, 3), (1, 6), (1, 3)]]  # (head, neuron) per class
    heads = np.array([[p[0] for p in row] for row in top])
    neurons = np.array([[p[1] for p in row] for row in top])
    w_KHC = ps.pair_weights(heads, neurons, H, C)
    assert w_KHC.sum() == 9 and w_KHC[1, 0, 7] == 1
    got = {m: ps.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, m) for m in ps.METHODS}
    for method in ps.METHODS:
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
        "nhtk->nkt", dec.token_head_maps(x_NTC, alpha_NHT, u_HCE, z_KE / np.linalg.norm(z_KE, axis=1, keepdims=True))
    )
    np.testing.assert_allclose(
        ps.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, everything, "heads"),
        C * aggregated[:, :, 1:],
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="valid methods"):
        ps.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, "selfself")


def test_upsample_and_background_threshold():
    logits = np.array([[[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]]])  # (1, 2 classes, 2 x 2 tokens)
    up = ps.upsample(logits, (2, 2), (4, 4))
    assert up.shape == (1, 2, 4, 4)
    assert up[0, 0, 0, 0] == pytest.approx(0.0) and up[0, 0, -1, -1] == pytest.approx(3.0)
    pred = ps.predict_with_background(logits.reshape(1, 2, 2, 2), threshold=0.7)
    # normalised best logit: 1, 2/3, 2/3, 1 -> the two middle tokens are background
    assert pred.tolist() == [[[2, 0], [0, 1]]]
    assert (ps.predict_with_background(logits.reshape(1, 2, 2, 2), threshold=0.0) > 0).all()


def test_shapes_ground_truth_and_confusions(tiny_dataset):
    data = datasets.load(tiny_dataset)
    images = np.array([0, 5, 9])
    gt = ps.shapes_ground_truth(
        data.masks, data.objects, images, "colour", ("red", "green", "blue", "pink", "black", "yellow")
    )
    assert gt.shape == (3, 64, 64)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(gt[i] == 0, data.masks[image] == 0)
        for _, obj in data.objects[data.objects["image_id"] == image].iterrows():
            labels = np.unique(gt[i][data.masks[image] == obj["object_id"]])
            assert labels.tolist() == [("red", "green", "blue", "pink", "black", "yellow").index(obj["colour"]) + 1]
    one_hot = (np.arange(1, 7)[None, :, None, None] == gt[:, None]).astype(float)
    cms = ps.shapes_confusions(gt, one_hot, gt)
    assert np.trace(cms["with_background"]) == gt.size
    assert cms["objects_only"][0].sum() == 0 and cms["objects_only"].sum() == (gt > 0).sum()


def test_slide_windows_follow_mmseg():
    assert ps.slide_windows(384, 512, 384, 192) == [(0, 384, 0, 384), (0, 384, 128, 512)]
    boxes = ps.slide_windows(500, 400, 384, 192)
    assert boxes == [(0, 384, 0, 384), (0, 384, 16, 400), (116, 500, 0, 384), (116, 500, 16, 400)]
    assert ps.slide_windows(100, 90, 128, 64) == [(0, 100, 0, 90)]
    with pytest.raises(ValueError):
        ps.slide_windows(10, 10, 0, 1)


def test_slide_logits_average_overlaps():
    image = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(2, 5, 7)
    out = ps.slide_logits(
        image, 4, 2, lambda crop: {"copy": crop.numpy().astype(np.float64), "ones": np.ones((1, 4, 4))}
    )
    np.testing.assert_allclose(out["copy"], image.numpy())  # every window sees the same pixel values
    np.testing.assert_allclose(out["ones"], 1.0)
    small = ps.slide_logits(image[:, :3, :3], 4, 2, lambda crop: {"copy": crop.numpy().astype(np.float64)})
    np.testing.assert_allclose(small["copy"], image[:, :3, :3].numpy())  # zero padding is cut off again


def test_rescale_size_is_mmcv_keep_ratio():
    assert ps.rescale_size(375, 500, (2048, 384)) == (384, 512)
    assert ps.rescale_size(500, 375, (2048, 384)) == (512, 384)
    assert ps.rescale_size(100, 2000, (2048, 384)) == (102, 2048)  # the long side binds


def _fake_pascal_context(root, names, size=(90, 120)):
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassContext").mkdir()
    (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(rng.integers(0, 60, size, dtype=np.uint8)).save(
            root / "SegmentationClassContext" / f"{name}.png"
        )
    (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(names) + "\n")


def test_pascal_context_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmseg's layout"):
        ps.pascal_context_items(tmp_path)
    _fake_pascal_context(tmp_path, ["2008_000002"])
    (tmp_path / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n2008_000003\n")
    with pytest.raises(FileNotFoundError, match="2008_000003"):
        ps.pascal_context_items(tmp_path)
    assert (
        len(ps.PASCAL_CONTEXT_59) == 59
        and ps.PASCAL_CONTEXT_59[0] == "aeroplane"
        and ps.PASCAL_CONTEXT_59[-1] == "wood"
    )


def test_pascal_context_stage_on_a_fake_copy(tmp_path):
    root = tmp_path / "VOC2010"
    _fake_pascal_context(root, ["2008_000002", "2008_000007"])
    out = {"miou": str(tmp_path / "out" / "miou.tsv"), "iou": str(tmp_path / "out" / "iou.tsv")}
    params = {"root": str(root), "split": "val", "scale": [512, 128], "crop_size": 128, "stride": 64,
              "logit_scale": 40.0, "top_k": 50, "n_images": None}  # fmt: skip
    segment_pascal_context(
        name="rn",
        model_entry={"architecture": "clipmech-rn-tiny"},
        out=out,
        params=params,
        device="cpu",
        threads=1,
        label="rn",
    )
    miou = pd.read_csv(out["miou"], sep="\t")
    assert list(miou["method"]) == list(ps.METHODS) and (miou["n_images"] == 2).all()
    assert miou["miou"].between(0, 1).all()
    iou = pd.read_csv(out["iou"], sep="\t")
    assert len(iou) == 4 * 59
    with pytest.raises(ValueError, match="crop_size"):
        segment_pascal_context(
            name="rn",
            model_entry={"architecture": "clipmech-rn-tiny"},
            out=out,
            params={**params, "crop_size": 96},
            device="cpu",
            threads=1,
            label="rn",
        )
