"""The workflow as researchers run it: lint, dry runs of the shipped configs, a tiny full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    out = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(ROOT / "config" / "paper.yaml")).stdout
    assert "results/activations/vit-l-14/shapes.zarr" in out
    assert "train_clip" not in out


def test_invalid_config_is_rejected_readably(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("k: 5", "k: 0"))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(bad), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "0 is less than the minimum of 1" in message and "['selectivity']['k']" in message


def test_unknown_model_in_analyses_lists_valid_ones(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("models: [tiny-vit]", "models: [vit-q]"))
    result = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(bad), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "vit-q" in message and "configured models are: tiny-vit" in message


@pytest.mark.integration
def test_tiny_config_runs_end_to_end(tmp_path):
    snakemake("--cores", "2", "--directory", str(tmp_path), "--configfile", str(TINY))
    results = tmp_path / "results"
    metrics = json.loads((results / "models/tiny-vit/metrics.json").read_text())
    assert set(metrics["zero_shot"]) >= {"colour", "shape", "position", "binding_colour_swap"}
    units = pd.read_csv(results / "selectivity/tiny-vit/tiny-shapes/units.tsv", sep="\t")
    assert len(units) == 2 * 64  # every unit of both layers
    assert np.all(np.diff(units["entropy"]) >= 0) and units["entropy"].max() <= np.log(16) + 1e-9
    for figure in ("entropy_by_layer.png", "top_images.png", "heatmaps.png"):
        assert (results / "selectivity/tiny-vit/tiny-shapes" / figure).stat().st_size > 1000
    assert not list(results.glob("activations/**/*.partial"))
    # Nothing left to do: a second invocation plans no job.
    assert "Nothing to be done" in snakemake("-n", "--directory", str(tmp_path), "--configfile", str(TINY)).stdout


def test_snakefmt_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
