"""Causal tracing on image-caption pairs with foil captions (methods.md Sec. 8.1): the pair table of a captions
dataset of scikit-image's photographs (nothing downloads), and the patch_components stage on it with the random
tiny ViT."""

import shutil
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import skimage
import torch
import torch.nn.functional as F
from PIL import Image

from clipmech.data import datasets, natural
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import corruptions, runs

#: Each photograph's caption: image 3 names no object of WORDS and no colour.
PHOTOS = [
    ("chelsea.png", "A cat lying on a red blanket"),
    ("astronaut.png", "a person in a white suit"),
    ("coffee.png", "a cup of coffee"),
    ("brick.png", "a wall of bricks"),
    ("rocket.jpg", "a white rocket on its launch pad"),
    ("motorcycle_left.png", "a red motorcycle"),
]
WORDS = ["cat", "person", "cup", "rocket", "motorcycle", "traffic light"]
OBJECT = {"kind": "object", "attributes": ["red", "white", "blue"]}
ATTRIBUTE = {"kind": "attribute", "attributes": ["red", "white", "blue", "green"]}
RANDOM = ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """The six photographs behind a captions file, indexed as a captions dataset."""
    raw, out = tmp_path_factory.mktemp("captioned-raw"), tmp_path_factory.mktemp("captioned") / "data"
    (raw / "photos").mkdir()
    for name, _ in PHOTOS:
        shutil.copy(Path(skimage.__file__).parent / "data" / name, raw / "photos" / name)
    rows = [{"filepath": f"photos/{name}", "title": caption} for name, caption in PHOTOS]
    pd.DataFrame(rows).to_csv(raw / "captions.tsv", sep="\t", index=False)
    natural.write_natural_dataset(out, {"kind": "captions", "path": str(raw / "captions.tsv")})
    return out


@pytest.mark.parametrize(("foil", "images"), [(OBJECT, [0, 1, 2, 4]), (ATTRIBUTE, [0, 1, 4, 5])])
def test_caption_pair_table_of_a_captions_dataset(captioned, foil, images, caplog):
    data = datasets.load(captioned)
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    with caplog.at_level("INFO"):
        pairs = runs.caption_pair_table(data, foil, WORDS, n_pairs=4, seed=0, tokenizer=tokenizer)
    assert pairs["image"].tolist() == images  # the first 4 images with a word of the kind, in manifest order
    n_left_out = images[-1] + 1 - len(images)
    assert f"{n_left_out} of the {images[-1] + 1} images before the last pair left out" in caplog.text
    vocabulary = WORDS if foil["kind"] == "object" else foil["attributes"]
    assert pairs["word"].isin(vocabulary).all() and pairs["replacement"].str.lower().isin(vocabulary).all()
    assert (pairs["caption"] == [PHOTOS[i][1] for i in images]).all()
    # Every foil found a replacement of the caption's token count: the word positions are the caption's.
    special = torch.unique(tokenizer([""]))
    words = corruptions.word_positions(tokenizer(list(pairs["caption"])), special)
    assert torch.equal(words, corruptions.word_positions(tokenizer(list(pairs["foil"])), special))
    assert runs.pairs_of(pairs, "zero", 3)["pair_id"].tolist() == [0, 1, 2]  # the embedding corruptions' pairs
    with pytest.raises(ValueError, match=r"the pair table has no 'colour' pairs; its kinds are \['caption'\]"):
        runs.pairs_of(pairs, "colour", 3)
    again = runs.caption_pair_table(data, foil, WORDS, n_pairs=4, seed=0, tokenizer=tokenizer)
    assert again.equals(pairs)


def test_a_captions_dataset_without_a_word_of_the_kind_is_refused(captioned):
    data = datasets.load(captioned)
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    with pytest.raises(ValueError, match="no image's first caption holds a word of foil kind 'object'"):
        runs.caption_pair_table(data, OBJECT, ["giraffe", "zebra"], n_pairs=2, seed=0, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="no word list is set"):
        runs.caption_pair_table(data, OBJECT, None, n_pairs=2, seed=0, tokenizer=tokenizer)


def test_patch_components_on_image_caption_pairs(captioned, tmp_path):
    from clipmech.stages.patch_components import patch_components

    out = {key: str(tmp_path / f"{key}.tsv") for key in ("recovery", "circuit", "circuit_summary", "runs")}
    patching = {
        "corruptions": ["zero", "noise"], "directions": ["denoising"], "n_pairs": 3, "noise_scale": 3.0,
        "min_effect": 0.0, "n_bootstrap": 100, "batch_size": 64, "seed": 0, "layers": None, "positions": [0, 1],
        "families": {"transformer": ["attn_out"], "resnet": ["stage"]},
        "circuit": {"threshold": 0.8, "n_points": 2, "n_random": 1, "mlp": "layer"},
    }  # fmt: skip
    patch_components(
        model=RANDOM,
        dataset_dir=str(captioned), out=out, patching=patching, device="cpu", precision="fp32", threads=1,
        foil=ATTRIBUTE,
    )  # fmt: skip
    table = pd.read_csv(out["runs"], sep="\t")
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    pairs = runs.caption_pair_table(datasets.load(captioned), ATTRIBUTE, None, n_pairs=3, seed=0, tokenizer=tokenizer)
    assert pairs["image"].tolist() == [0, 1, 4]  # images 2 and 3 have no colour word: the pixels skip them
    assert table.groupby(["corruption", "tower"]).size().to_dict() == {
        (corruption, tower): 3 for corruption in ("zero", "noise") for tower in ("visual", "text")
    }  # every pair in both towers: an embedding corruption keeps the caption's tokens
    for _, part in table.groupby(["corruption", "tower"]):
        assert part["pair_id"].tolist() == [0, 1, 2]
        assert part["caption"].tolist() == pairs["caption"].tolist() and part["foil"].tolist() == pairs["foil"].tolist()
    # The clean run does not depend on the corruption: the same metric under zero and noise.
    clean = table.pivot_table(index=["tower", "pair_id"], columns="corruption", values="m_clean")
    pd.testing.assert_series_equal(clean["zero"], clean["noise"], check_names=False)
    # The vision tower's clean metric is that of each pair's own photograph (read through the manifest) against
    # its caption and foil, image by image.
    model, preprocess, tokenizer = loading.load(RANDOM, "cpu")
    photos = [Image.open(Path(skimage.__file__).parent / "data" / PHOTOS[i][0]).convert("RGB") for i in pairs["image"]]
    with torch.inference_mode():
        image = F.normalize(model.encode_image(torch.stack([preprocess(p) for p in photos])), dim=-1)
        caption, foil = (F.normalize(model.encode_text(tokenizer(list(pairs[c]))), dim=-1) for c in ("caption", "foil"))
    expected = model.logit_scale.detach().exp() * ((image * caption).sum(-1) - (image * foil).sum(-1))
    np.testing.assert_allclose(clean.loc["visual", "zero"], expected.numpy(), rtol=1e-4, atol=1e-4)
    recovery = pd.read_csv(out["recovery"], sep="\t")
    assert set(zip(recovery["corruption"], recovery["tower"], strict=True)) == {
        (c, t) for c in ("zero", "noise") for t in ("visual", "text")
    }
    assert set(recovery["family"]) == {"attn_out"} and set(recovery["position"]) == {0, 1}
    summary = pd.read_csv(out["circuit_summary"], sep="\t")
    assert set(summary["order"]) == {"greedy", "random"}
