"""MiCLIP on natural-image datasets (methods.md Sec. 9.8): the tiny Shapes images as photographs in class folders
(an imagefolder) and behind a captions file, probed, embedded, trained on and evaluated with a random tiny CLIP
as both target and reference."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from toys import COUNTS, shapes_as_photographs

from clipmech.data import concepts, datasets, shapes
from clipmech.miclip import tables
from clipmech.miclip.evaluation import array_batches, sae_set
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.sae.latents import token_positions
from clipmech.sae.model import TopKSAE, save_sae
from clipmech.stages.embed_miclip_concepts import embed_miclip_concepts, load_concepts
from clipmech.stages.evaluate_miclip import evaluate_miclip
from clipmech.stages.plot_miclip import plot_miclip
from clipmech.stages.probe_miclip import load_probe, probe_miclip
from clipmech.stages.train_miclip import train_miclip

SITE = "visual.blocks.1.hook_resid_pre"
RANDOM = ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None)
RANDOM_RN = ModelSpec(name="random-rn", architecture="clipmech-rn-tiny", pretrained=None)
RN_SITE = "visual.blocks.3.hook_resid_post"
TRAIN = {
    "losses": ["both", "input", "output"],
    "seeds": [0, 1],
    "steps": 3,
    "batch_size": 4,
    "lr": 0.01,
    "temperature": 0.07,
}
EVALUATION = {
    "seeds": [0, 1],
    "tau": 2,
    "interventions": {"scale": [2.0, 0.0], "add": [1.0, -1.0]},
    "clip_dissect": {"top_k": 3, "a": 10.0, "lam": 1.0},
    "netdissect": {"quantile": 0.005, "resolution": 28},
    "batch_size": 4,
}
WORDS = ["one", "two", "three", "four", "five"]
TEMPLATES = ["a photo of {}."]


def _random_sae(d, n_latents, k, seed):
    generator = torch.Generator().manual_seed(seed)
    sae = TopKSAE(d, n_latents, k)
    with torch.no_grad():
        w = torch.randn(d, n_latents, generator=generator)
        sae.W_dec.copy_(w / w.norm(dim=0, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
    return sae.eval()


def _classifier(work, directory):
    net, _ = loading.load_model(RANDOM)
    classnames, templates, provenance = zeroshot.dataset_classifier(RANDOM, datasets.load(directory), TEMPLATES)
    weights = zeroshot.classifier(
        net, loading.load_tokenizer(RANDOM), classnames, templates, device="cpu", batch_size=8
    )
    path = work / "classifier.npz"
    zeroshot.save_classifier(path, weights, provenance)
    return str(path)


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    """15 Shapes images (3 per object count) as PNGs in one folder per count, indexed as an imagefolder and, with
    a caption naming the count, as a captions dataset."""
    tmp, raw = tmp_path_factory.mktemp("natural-miclip"), tmp_path_factory.mktemp("natural-miclip-raw")
    synthetic = tmp / "shapes"
    shapes.build(synthetic, shapes.ShapesSpec(n_per_count=3, image_size=64, seed=5))
    data = datasets.load(synthetic)
    out = shapes_as_photographs(data, raw, tmp, lambda i, count: f"{COUNTS[count - 1]} shapes")
    return tmp, out


@pytest.mark.parametrize("kind", ["imagefolder", "captions"])
def test_miclip_runs_on_natural_images(photographs, kind, caplog):
    tmp, directories = photographs
    directory, work = str(directories[kind]), tmp / f"run-{kind}"
    natural_params = {
        "words": WORDS if kind == "captions" else None,
        "templates": TEMPLATES if kind == "imagefolder" else None,
    }
    data = datasets.load(directory)
    names = list(concepts.concept_matrix(data, words=natural_params["words"]).names)

    embeddings = str(work / "reference.npz")
    embed_miclip_concepts(
        model=RANDOM,
        embeddings=embeddings,
        n_words=50,
        device="cpu",
        threads=1,
        dataset_dir=directory,
        natural=natural_params,
    )
    with load_concepts(embeddings) as npz:
        assert [str(c) for c in npz["concepts"]] == names
        assert npz["concept_embeddings"].shape[0] == len(names)
        assert [str(p) for p in npz["prompts"]][0] == f"a photo of a {names[0]}."

    probe = str(work / "probe.npz")
    probe_miclip(
        model=RANDOM,
        reference=RANDOM,
        dataset_dir=directory,
        site=SITE,
        probe=probe,
        holdout=0.4,
        seed=0,
        batch_size=4,
        device="cpu",
        threads=1,
        natural=natural_params,
    )
    with load_probe(probe) as npz:
        assert "site_acts" not in npz
        assert npz["image_acts"].shape == (15, 64) and npz["image_acts"].dtype == np.float32
        assert npz["predictions"].shape == (15, 1) and npz["predictions"].max() < len(names)
        assert npz["reference_images"].shape[0] == 15
        assert npz["heldout_images"].size == 6 and npz["train_images"].size == 9

    out = {"encoders": str(work / "encoders.pt"), "log": str(work / "training.tsv")}
    train_miclip(probe=probe, concepts=embeddings, out=out, train=TRAIN, threads=1)
    assert np.isfinite(pd.read_csv(out["log"], sep="\t")[["train", "heldout"]].to_numpy()).all()

    names_out = ("descriptions", "localisation", "interventions", "description_accuracy", "delta_acc", "ablation")
    results = {name: str(work / "neurons" / f"{name}.tsv") for name in names_out}
    classifier = _classifier(work, directory) if kind == "imagefolder" else None
    with caplog.at_level(logging.INFO):
        evaluate_miclip(
            model=RANDOM,
            kind="neurons",
            dataset_dir=directory,
            probe=probe,
            concepts=embeddings,
            encoders=out["encoders"],
            sae=[],
            out=results,
            evaluation=EVALUATION,
            k_top=3,
            device="cpu",
            threads=1,
            natural=natural_params,
            classifier=classifier,
        )
    descriptions = pd.read_csv(results["descriptions"], sep="\t")
    assert set(descriptions["vocabulary"]) == {"concepts", "words"}
    assert set(descriptions.loc[descriptions["vocabulary"] == "concepts", "concept"]) <= set(names)
    localisation = pd.read_csv(results["localisation"], sep="\t")
    assert set(localisation["concept"]) == set(names) and "netdissect" not in set(localisation["method"])
    accuracy = pd.read_csv(results["description_accuracy"], sep="\t")
    assert {"miclip", "act_values", "clip_dissect"} <= set(accuracy["method"])
    assert accuracy["accuracy_mean"].between(0, 1).all()
    interventions = pd.read_csv(results["interventions"], sep="\t")
    delta = pd.read_csv(results["delta_acc"], sep="\t")
    assert list(delta.columns) == list(tables.DELTA_COLUMNS)
    if kind == "captions":  # no single class per image: no Delta Acc, and the log says why
        assert "which has no single class per image" in caplog.text
        assert interventions.empty and delta.empty
    else:  # each class's held-out photographs, classified over the folder classes
        held_out = load_probe(probe)["heldout_images"]
        labels = data.manifest["label"].to_numpy()[held_out]
        n_images = interventions.groupby("concept")["n_images"].first()
        assert n_images.to_dict() == {names[c]: int((labels == c).sum()) for c in np.unique(labels)}
        assert set(interventions["method"]) == {
            "miclip",
            "miclip_input",
            "miclip_output",
            "act_values",
            "clip_dissect",
            "random",
        }
        assert interventions["accuracy_before"].between(0, 1).all() and np.isfinite(interventions["delta_acc"]).all()
        # Scaling by 1 or adding 0 changes nothing; here the betas move the prediction or not, within [-100, 100].
        assert interventions["delta_acc"].abs().le(100).all()
        assert len(delta) == 6 * 4 and set(delta["effect"]) == {"enhance", "remove"}

    # The figures draw from the tables: an empty Delta Acc table says that no interventions ran.
    figures = {"delta_figure": str(work / "delta_acc.png"), "description_figure": str(work / "descriptions.png")}
    plot_miclip(
        delta_acc=results["delta_acc"],
        description_accuracy=results["description_accuracy"],
        out=figures,
        kind="neurons",
        tau=2,
        label="random",
    )
    assert all(Path(path).stat().st_size > 0 for path in figures.values())


def test_a_resnet_stage_on_an_image_folder(photographs):
    """A CLIP-ResNet's channels (N, C, h, w): probed as image-level means, intervened on along axis 1."""
    tmp, directories = photographs
    directory, work = str(directories["imagefolder"]), tmp / "run-resnet"
    natural_params = {"words": None, "templates": TEMPLATES}
    embeddings, probe = str(work / "reference.npz"), str(work / "probe.npz")
    embed_miclip_concepts(
        model=RANDOM,
        embeddings=embeddings,
        n_words=20,
        device="cpu",
        threads=1,
        dataset_dir=directory,
        natural=natural_params,
    )
    probe_miclip(
        model=RANDOM_RN, reference=RANDOM, dataset_dir=directory, site=RN_SITE, probe=probe, holdout=0.4, seed=0,
        batch_size=4, device="cpu", threads=1, natural=natural_params,
    )  # fmt: skip
    with load_probe(probe) as npz:
        acts = npz["image_acts"]
    assert acts.ndim == 2 and acts.shape[0] == 15
    out = {"encoders": str(work / "encoders.pt"), "log": str(work / "training.tsv")}
    train_miclip(probe=probe, concepts=embeddings, out=out, train=TRAIN, threads=1)
    net, _ = loading.load_model(RANDOM_RN)
    classnames, templates, provenance = zeroshot.dataset_classifier(RANDOM_RN, datasets.load(directory), TEMPLATES)
    weights = zeroshot.classifier(
        net, loading.load_tokenizer(RANDOM_RN), classnames, templates, device="cpu", batch_size=8
    )
    zeroshot.save_classifier(work / "classifier.npz", weights, provenance)
    names_out = ("descriptions", "localisation", "interventions", "description_accuracy", "delta_acc", "ablation")
    results = {name: str(work / f"{name}.tsv") for name in names_out}
    evaluate_miclip(
        model=RANDOM_RN, kind="neurons", dataset_dir=directory, probe=probe, concepts=embeddings,
        encoders=out["encoders"], sae=[], out=results, evaluation=EVALUATION, k_top=3, device="cpu", threads=1,
        natural=natural_params, classifier=str(work / "classifier.npz"),
    )  # fmt: skip
    interventions = pd.read_csv(results["interventions"], sep="\t")
    assert len(interventions) and np.isfinite(interventions["delta_acc"]).all()


@pytest.mark.parametrize("tokens", ["all", "patch"])
def test_an_sae_set_read_twice_equals_the_one_that_keeps_its_codes(tokens, tmp_path):
    """Without maps (natural images) an SAE unit set reads its batches twice and keeps no codes; it has the
    image-level activations, typical firing values, embeddings and edits of the set that keeps every image's
    codes for the maps."""
    rng = np.random.default_rng(3)
    site_acts = rng.standard_normal((150, 5, 16)).astype(np.float32)  # 1 class token + 2 x 2 patches
    sae = _random_sae(16, 40, 4, seed=1)
    positions = token_positions(tokens, 5, 1)
    reads = []

    def batches():
        reads.append(1)
        return array_batches(site_acts, 7)()

    streamed = sae_set(sae, positions, 1, batches, batch_images=3, scratch=tmp_path / "streamed")
    assert streamed.maps is None and len(reads) == 2
    kept = sae_set(sae, positions, 1, array_batches(site_acts, 150), (2, 2), scratch=tmp_path / "kept")
    assert kept.maps is not None  # both read every patch token
    np.testing.assert_array_equal(streamed.acts_NU[:], kept.acts_NU[:])
    W = rng.standard_normal((8, 16))
    np.testing.assert_allclose(streamed.embed(W), kept.embed(W), rtol=1e-10, atol=1e-12)
    assert np.abs(kept.embed(W)).sum() > 0  # the latents fire: the typical firing values are compared


def test_sae_latents_on_an_image_folder(photographs, tmp_path):
    """An SAE unit set on natural images: its latents on the held-out photographs' tokens, described with the
    folder classes, intervened on."""
    _, directories = photographs
    directory = str(directories["imagefolder"])
    natural_params = {"words": None, "templates": TEMPLATES}
    embeddings, probe = str(tmp_path / "reference.npz"), str(tmp_path / "probe.npz")
    embed_miclip_concepts(
        model=RANDOM,
        embeddings=embeddings,
        n_words=20,
        device="cpu",
        threads=1,
        dataset_dir=directory,
        natural=natural_params,
    )
    probe_miclip(
        model=RANDOM, reference=RANDOM, dataset_dir=directory, site=SITE, probe=probe, holdout=0.4, seed=0,
        batch_size=4, device="cpu", threads=1, natural=natural_params,
    )  # fmt: skip
    out = {"encoders": str(tmp_path / "encoders.pt"), "log": str(tmp_path / "training.tsv")}
    train_miclip(probe=probe, concepts=embeddings, out=out, train=TRAIN, threads=1)
    checkpoint = tmp_path / "sae.pt"
    save_sae(checkpoint, _random_sae(64, 96, 8, seed=4), {"site": SITE, "tokens": "all", "holdout_images": [1]})
    names_out = ("descriptions", "localisation", "interventions", "description_accuracy", "delta_acc", "ablation")
    results = {name: str(tmp_path / f"{name}.tsv") for name in names_out}
    evaluate_miclip(
        model=RANDOM, kind="sae", dataset_dir=directory, probe=probe, concepts=embeddings, encoders=out["encoders"],
        sae=[str(checkpoint)], out=results, evaluation=EVALUATION, k_top=3, device="cpu", threads=1,
        natural=natural_params, classifier=_classifier(tmp_path, directory),
    )  # fmt: skip
    descriptions = pd.read_csv(results["descriptions"], sep="\t")
    assert descriptions["unit"].max() < 96 and set(descriptions["vocabulary"]) == {"concepts", "words"}
    interventions = pd.read_csv(results["interventions"], sep="\t")
    assert len(interventions) and np.isfinite(interventions["delta_acc"]).all()
