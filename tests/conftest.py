"""Shared fixtures. Seeds are fixed here; tiny models are built once per session."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from huggingface_hub import constants as hf_constants
from snakemake_cli import TINY, snakemake
from toys import seeded_double

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.data import shapes


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """The Hugging Face Hub in offline mode (no request is made) with an empty cache at ``tmp_path / "hub"``,
    the returned path; a test sees the state of a machine without network that never fetched a file."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def vit():
    """The tiny ViT CLIP (``clipmech-vit-tiny``), random weights, float64, eval mode (shared: never edit it in place)."""
    return seeded_double(lambda: open_clip.create_model("clipmech-vit-tiny"))


@pytest.fixture(scope="session")
def rn():
    """The tiny CLIP-ResNet (``clipmech-rn-tiny``), random weights, float64, eval mode (shared: never edit it in place)."""
    return seeded_double(lambda: open_clip.create_model("clipmech-rn-tiny"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 10-image Shapes dataset at 64 px on disk."""
    directory = tmp_path_factory.mktemp("tiny-shapes")
    shapes.build(directory, shapes.ShapesSpec(n_per_count=2, image_size=64, seed=3))
    return directory


@pytest.fixture(scope="session")
def tiny_vit():
    """The offline default architecture with random weights, in eval mode."""
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("clipmech-vit-tiny", pretrained=None)
    return model.eval(), preprocess


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The working directory of one finished run of the whole DAG on tests/config/tiny.yaml.

    Shared by the integration tests that only read it or dry-run against it; a test that runs jobs
    in it must copy it first.
    """
    workdir = tmp_path_factory.mktemp("tiny-run")
    snakemake("--cores", "2", "--configfile", TINY, workdir=workdir)
    return workdir
