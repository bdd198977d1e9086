"""The workflow as researchers run it: lint, dry runs of the shipped configs, a tiny full run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake_cli import PAPER, paper_locations

from clipmech.sae.model import load_sae

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "config" / "tiny.yaml"


def snakemake(*args, cwd=ROOT, check=True, timeout=1200):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def test_lint_is_clean():
    result = snakemake("--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_config_plans_the_whole_pipeline(tmp_path):
    out = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / "config" / "config.yaml")).stdout
    for rule in ("synthesize_shapes", "train_clip", "extract_activations", "neuron_selectivity", "plot_selectivity"):
        assert rule in out


def test_paper_config_plans_vit_l_14(tmp_path):
    roots = tmp_path / "roots.yaml"  # the dataset locations: a dry run reads none of them
    roots.write_text(yaml.safe_dump(paper_locations(tmp_path / "data")))
    out = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(PAPER), str(roots)).stdout
    assert "results/activations/vit-l-14/shapes.zarr" in out
    assert "train_clip" not in out


def rejected(tmp_path, old: str, new: str) -> str:
    """The output of a dry run of tests/config/tiny.yaml with ``old`` replaced by ``new``; asserts it failed."""
    bad = tmp_path / "bad.yaml"
    text = TINY.read_text()
    assert old in text, f"{old!r} is not in {TINY}"
    bad.write_text(text.replace(old, new))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(bad), check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_invalid_config_is_rejected_readably(tmp_path):
    message = rejected(tmp_path, "k: 5", "k: 0")
    assert "invalid config at selectivity.k: 0 is less than the minimum of 1" in message


def test_unknown_model_in_analyses_lists_valid_ones(tmp_path):
    message = rejected(tmp_path, "models: [tiny-vit]", "models: [vit-q]")
    assert "vit-q" in message and "configured models are: tiny-rn, tiny-vit" in message


def test_shift_dataset_with_an_unknown_base_lists_the_shapes_datasets(tmp_path):
    message = rejected(tmp_path, "base: tiny-shapes", "base: tiny-circles")
    assert "datasets.tiny-shapes-shift.base" in message and "configured shapes datasets are: tiny-shapes" in message


def test_shift_splits_are_a_dataset_synthesised_like_any(tmp_path):
    out = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(TINY)).stdout
    assert "results/datasets/tiny-shapes-shift/data" in out and "results/attnpool/tiny-rn/tiny-shapes-shift.zarr" in out
    config = yaml.safe_load(TINY.read_text())
    del config["datasets"]["tiny-shapes-shift"]
    unshifted = tmp_path / "unshifted.yaml"
    unshifted.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(unshifted))
    assert "monitor_shift" not in result.stdout and "synthesize_shift" not in result.stdout
    assert "no dataset of kind shift has base tiny-shapes" in result.stdout + result.stderr


def test_cifar10_map_only_with_a_cifar10_dataset(tmp_path):
    skipped = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(TINY))
    assert "tsne_cifar10" not in skipped.stdout and "tsne.cifar10 is not set" in skipped.stdout + skipped.stderr
    config = yaml.safe_load(TINY.read_text())
    config["datasets"]["cifar"] = {"kind": "cifar10", "root": str(tmp_path / "cifar"), "n_images": 100}
    config["tsne"]["cifar10"] = "cifar"
    config["zeroshot"] = {"datasets": []}  # the map only (a dataset with classes is classified by default)
    path = tmp_path / "cifar.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(path)).stdout
    # The copy is indexed (the layout is checked then, by torchvision) and its folder is the map's input.
    assert "results/tsne/tiny-vit/cifar10.png" in out and "results/datasets/cifar/data" in out
    assert "rule index_images" in out and "rule tsne_cifar10" in out


@pytest.mark.integration
def test_tiny_config_runs_end_to_end(tiny_run):
    """Checks the outputs of the session's shared full run of the tiny config (conftest.tiny_run)."""
    results = tiny_run / "results"
    metrics = json.loads((results / "models/tiny-vit/metrics.json").read_text())
    assert set(metrics["zero_shot"]) >= {"colour", "shape", "position", "binding_colour_swap"}
    units = pd.read_csv(results / "selectivity/tiny-vit/tiny-shapes/units.tsv", sep="\t")
    assert len(units) == 2 * 64  # every unit of both layers
    assert np.all(np.diff(units["entropy"]) >= 0) and units["entropy"].max() <= np.log(16) + 1e-9
    for figure in ("entropy_by_layer.png", "top_images.png", "heatmaps.png"):
        assert (results / "selectivity/tiny-vit/tiny-shapes" / figure).stat().st_size > 1000
    pairs = pd.read_csv(results / "superposition/tiny-vit/tiny-shapes/pairs.tsv", sep="\t")
    assert len(pairs) == 35 and (pairs["n_units"] == 32).all() and (pairs["status"] == "ok").any()
    correlations = pd.read_csv(results / "superposition/tiny-vit/tiny-shapes/correlations.tsv", sep="\t")
    assert list(correlations["pair_type"].unique()) == ["all", "shape", "colour", "position"]
    assert (correlations.groupby("pair_type").size() == 2 * 4 * 2).all()  # (ratio, joint) x (D, M; full, PCA) x 2
    accuracy = pd.read_csv(results / "binding/tiny-vit/tiny-shapes/accuracy.tsv", sep="\t")
    overall = accuracy[accuracy["n_objects"] == "all"].set_index("task")
    assert set(overall.index) == {"colour_swap", "shape_swap", "position_swap", "absent_colour", "absent_shape"}
    assert (overall.loc["colour_swap", "n_images"] == 4 * 8) and overall["accuracy"].between(0, 1).all()
    summary = pd.read_csv(results / "gradcam/tiny-vit/tiny-shapes/summary.tsv", sep="\t").set_index("prompt_type")
    assert list(summary.index) == ["correct", "swapped", "absent"] and (summary["n_prompts"] == 4).all()
    fractions = summary[["target", "lure", "other", "background"]].sum(axis=1)
    np.testing.assert_allclose(fractions, 1.0, atol=1e-4)
    assert len(pd.read_csv(results / "tsne/tiny-vit/tiny-shapes/tsne.tsv", sep="\t")) == 5 * 8
    for figure in ("superposition/tiny-vit/tiny-shapes/distance.png", "superposition/tiny-vit/tiny-shapes/misclassification.png",
                   "binding/tiny-vit/tiny-shapes/accuracy.png", "gradcam/tiny-vit/tiny-shapes/examples.png",
                   "tsne/tiny-vit/tiny-shapes/tsne.png"):  # fmt: skip
        assert (results / figure).stat().st_size > 1000
    assert not list(results.glob("tsne/tiny-vit/cifar10.*"))  # no local CIFAR-10 configured: skipped
    decomposition = results / "decomposition/tiny-rn/tiny-shapes"
    summary = json.loads((decomposition / "summary.json").read_text())
    assert (summary["n_heads"], summary["n_neurons"], summary["grid"]) == (8, 512, [4, 4])
    assert summary["reconstruction_rel_err_max"] < 1e-5 and summary["pair_cos_pc_u_min"] > 0.999
    ablation = pd.read_csv(decomposition / "ablation.tsv", sep="\t")
    assert len(ablation) == 4 * 3 * 3  # levels x fractions x tasks
    assert list(ablation["level"].unique()) == ["pair", "neuron", "head", "neuron_activation"]
    kept_all = ablation[ablation["fraction"] == 1.0]
    np.testing.assert_allclose(kept_all["accuracy"], kept_all["model_accuracy"])  # nothing ablated
    sparse = pd.read_csv(decomposition / "sparse_accuracy.tsv", sep="\t")
    assert set(sparse["m"].dropna()) == {1, 4} and sparse["accuracy"].between(0, 1).all()
    assert len(pd.read_csv(decomposition / "class_pairs.tsv", sep="\t")) == 16 * 2  # 16 prompts x 2 pairs
    registers = pd.read_csv(decomposition / "registers.tsv", sep="\t")
    assert len(registers) == 512 and registers["sink_token"].nunique() == 1
    shift = pd.read_csv(decomposition / "shift_splits.tsv", sep="\t")
    np.testing.assert_allclose(shift["measured_share"], shift["true_share"])  # shares hold by construction
    miou = pd.read_csv(results / "segmentation/tiny-rn/tiny-shapes/miou.tsv", sep="\t")
    assert len(miou) == 2 * 4 * 2 and miou["miou"].between(0, 1).all()  # tasks x methods x scorings
    for figure in ("norms.png", "ablation.png", "sparse_accuracy.png", "attention_sink.png", "shift.png"):
        assert (decomposition / figure).stat().st_size > 1000
    for figure in ("heatmaps.png", "masks.png"):
        assert (results / "segmentation/tiny-rn/tiny-shapes" / figure).stat().st_size > 1000
    assert not list(results.glob("pascal-context-59/*"))  # no local PASCAL Context configured: skipped
    sae_dir = results / "sae/tiny-vit/tiny-shapes/visual.blocks.1.hook_resid_pre"
    sae, meta = load_sae(sae_dir / "checkpoint.pt")
    assert (sae.d, sae.n_latents, sae.k, meta["steps"], meta["tokens"]) == (64, 128, 4, 32, "all")
    assert meta["provenance"]["model"] == "tiny-vit" and meta["n_train_images"] == 36
    sae_log = pd.read_csv(sae_dir / "training.tsv", sep="\t")
    assert len(sae_log) == 32 and sae_log["fvu"].iloc[-5:].mean() < sae_log["fvu"].iloc[:5].mean()
    assert (sae_dir / "training.png").stat().st_size > 1000 and not list(sae_dir.glob("*.resume"))
    miclip = results / "miclip/tiny-vit/tiny-shapes/visual.blocks.1.hook_mlp_out"
    training = pd.read_csv(miclip / "training.tsv", sep="\t")
    assert len(training) == 3 * 2 * 20 and set(training["loss"]) == {"both", "input", "output"}
    for kind_dir in (miclip / "neurons", results / "miclip/tiny-vit/tiny-shapes/visual.blocks.1.hook_resid_pre/sae",
                     results / "miclip/tiny-rn/tiny-shapes/visual.blocks.3.hook_resid_post/neurons"):  # fmt: skip
        descriptions = pd.read_csv(kind_dir / "descriptions.tsv", sep="\t")
        assert list(descriptions.columns) == ["unit", "method", "seed", "vocabulary", "rank", "concept", "score"]
        assert set(descriptions["vocabulary"]) == {"shapes", "words"} and descriptions["rank"].max() == 5
        localisation = pd.read_csv(kind_dir / "localisation.tsv", sep="\t")
        assert list(localisation.columns) == ["concept", "method", "seed", "rank", "unit", "score"]
        rows = pd.read_csv(kind_dir / "interventions.tsv", sep="\t")
        assert set(rows["intervention"]) == {"scale", "add"} and rows["delta_acc"].abs().max() <= 100
        np.testing.assert_allclose(
            rows["delta_acc"], 100 * (rows["accuracy_after"] - rows["accuracy_before"]), atol=1e-3
        )
        delta = pd.read_csv(kind_dir / "delta_acc.tsv", sep="\t")
        assert {"miclip", "act_values", "clip_dissect", "random"} <= set(delta["method"])
        assert len(pd.read_csv(kind_dir / "ablation.tsv", sep="\t")) == 3
        assert len(pd.read_csv(kind_dir / "description_accuracy.tsv", sep="\t")) >= 5
        for figure in ("delta_acc.png", "descriptions.png"):
            assert (kind_dir / figure).stat().st_size > 1000
    assert not list(results.glob("attnpool/**/*.partial"))
    assert not list(results.glob("activations/**/*.partial"))
    # Nothing left to do: a second invocation plans no job.
    assert "Nothing to be done" in snakemake("-n", "--directory", str(tiny_run), "--configfile", str(TINY)).stdout


@pytest.mark.integration
def test_store_in_parts_equals_the_one_job_store(tiny_run, tmp_path):
    """extraction.parts = 3 in a copy of the tiny run: a template job, 3 part jobs and a publishing job write
    the activation store again, the same byte for byte as the one extract_activations wrote (parts = 1)."""
    workdir, store = tmp_path / "run", "results/activations/tiny-vit/tiny-shapes.zarr"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    shutil.rmtree(workdir / store)
    config = tmp_path / "parts.yaml"
    config.write_text(TINY.read_text().replace("\nextraction:\n", "\nextraction:\n  parts: 3\n", 1))
    snakemake(store, "--cores", "2", "--configfile", str(config), cwd=workdir)  # --configfile takes several
    logs = sorted(path.relative_to(workdir / "logs").as_posix() for path in (workdir / "logs").rglob("*.log"))
    new = [log for log in logs if not (tiny_run / "logs" / log).exists()]
    assert new == [
        "begin_activations/tiny-vit/tiny-shapes.log",
        *(f"extract_activations/tiny-vit/tiny-shapes.part-{k}.log" for k in range(3)),
        "publish_activations/tiny-vit/tiny-shapes.log",
    ]

    def files(path):
        return {file.relative_to(path): file.read_bytes() for file in sorted(path.rglob("*")) if file.is_file()}

    assert files(workdir / store) == files(tiny_run / store)
    assert sorted(path.name for path in (workdir / store).parent.iterdir()) == ["tiny-shapes.zarr"]  # no part files


def test_the_storage_plan_against_the_stores(tiny_run):
    """clipmech.storage's estimate of each store of the tiny run against the bytes of its files: an activation
    store and a MiCLIP probe's transformer site within 10 %; an attention-pool store and a probe's ResNet stage
    at most the estimate (post-ReLU values: zstd compresses their zeros, to 34 % for the ResNet stage)."""
    from clipmech import storage
    from clipmech.config import read_config

    stores = storage.storage_plan(read_config(TINY), tiny_run)
    kinds = ["activations", "attnpool", "attnpool", "miclip", "miclip", "miclip"]
    assert sorted(store.kind for store in stores) == kinds
    for store in stores:
        written = sum(path.stat().st_size for path in (tiny_run / store.path).rglob("*") if path.is_file())
        if store.kind == "activations" or (store.kind == "miclip" and store.model == "tiny-vit"):
            assert abs(store.nbytes - written) <= 0.1 * written, (store.path, store.nbytes, written)
        else:
            assert 0.25 * store.nbytes <= written <= store.nbytes, (store.path, store.nbytes, written)


def test_snakefmt_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
