"""Failures as they happen on real runs: a job killed mid-extraction, and a job failing on bad input.

The kill is real: Snakemake runs in its own session and, once the extraction job has recorded a
finished batch in ``<store>.progress.json``, the whole process group (Snakemake and the job) gets
SIGKILL. The models here have random weights (``pretrained: null``), so no training is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import xarray as xr
import yaml
from snakemake_cli import SNAKEFILE, TINY, planned_jobs, snakemake

from clipmech.codehash import code_hash
from clipmech.models.loading import ModelSpec
from clipmech.stages.extract_activations import extract_activations
from clipmech.stores.activations import open_store
from clipmech.stores.base import partial_path, progress_path

pytestmark = pytest.mark.integration

RANDOM_VIT = {"architecture": "clipmech-vit-tiny", "pretrained": None}


def write_config(path: Path, models: dict, dataset_changes: dict | None = None, extraction_changes: dict | None = None):
    """tests/config/tiny.yaml with ``models`` added and analysed on its Shapes dataset, with the given changes."""
    config = yaml.safe_load(TINY.read_text())
    (dataset,) = (name for name, entry in config["datasets"].items() if entry["kind"] == "shapes")
    config["datasets"][dataset].update(dataset_changes or {})
    config["models"].update(models)  # other sections may name the tiny models
    config["analyses"] = {"models": list(models), "datasets": [dataset]}
    config["miclip"]["units"] = {}  # its SAE unit set needs tiny-vit's SAE, which sae.models (= analyses) drops
    config["extraction"].update(extraction_changes or {})
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # key order is part of Snakemake's params
    return config, dataset


def process_group(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def kill_after_first_batch(command: list[str], workdir: Path, progress: Path, timeout: float = 600) -> int:
    """Start ``command`` in a new session, SIGKILL its process group as soon as ``progress`` records
    completed images, and return the count seen then."""
    with open(workdir / "killed-run.log", "w") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    complete = 0
    try:
        deadline = time.monotonic() + timeout
        while not complete:
            assert process.poll() is None, (
                "Snakemake ended before extraction started:\n" + (workdir / "killed-run.log").read_text()[-4000:]
            )
            assert time.monotonic() < deadline, f"no extraction progress in {timeout} s"
            with contextlib.suppress(FileNotFoundError):  # not written yet
                complete = json.loads(progress.read_text())["images_complete"]
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 10
    while process_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_group(process.pid), "processes of the killed run survived SIGKILL"
    return complete


def test_killed_extraction_resumes_to_the_uninterrupted_store(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    # 100 images in batches of 2: 50 batches, enough time to kill the job between two of them.
    config, dataset = write_config(
        tmp_path / "kill.yaml", {"random-vit": RANDOM_VIT}, {"n_per_count": 20}, {"batch_size": 2}
    )
    target = f"results/activations/random-vit/{dataset}.zarr"
    store, partial, progress = workdir / target, partial_path(workdir / target), progress_path(workdir / target)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
               target, "--cores", "2", "--configfile", str(tmp_path / "kill.yaml")]  # fmt: skip

    seen = kill_after_first_batch(command, workdir, progress)
    n_images = len(np.load(workdir / f"results/datasets/{dataset}/data/images.npy", mmap_mode="r"))
    assert not store.exists(), "a killed extraction published its store"
    assert partial.is_dir()
    assert seen <= json.loads(progress.read_text())["images_complete"] < n_images

    snakemake("--unlock", "--configfile", tmp_path / "kill.yaml", workdir=workdir)
    snakemake(target, "--cores", "2", "--rerun-incomplete", "--configfile", tmp_path / "kill.yaml", workdir=workdir)
    log = (workdir / f"logs/extract_activations/random-vit/{dataset}.log").read_text()
    resumed = re.findall(r"resuming \S+ after (\d+) ", log)
    assert len(resumed) == 1 and seen <= int(resumed[0]) < n_images, log[-4000:]
    assert store.is_dir() and not partial.exists() and not progress.exists()

    # The uninterrupted extraction of the same model and data, as the rule runs it (threads: 2).
    threads = torch.get_num_threads()
    try:
        extract_activations(
            model=ModelSpec("random-vit", **RANDOM_VIT),
            dataset_dir=str(workdir / f"results/datasets/{dataset}/data"),
            store=str(tmp_path / "reference.zarr"),
            extraction=config["extraction"],
            threads=2,
            code=code_hash(SNAKEFILE.parent / "workflow/scripts/extract_activations.py"),
        )
    finally:
        torch.set_num_threads(threads)
    resumed_store, reference = open_store(store), open_store(tmp_path / "reference.zarr")
    xr.testing.assert_equal(resumed_store, reference)
    assert resumed_store.attrs.keys() == reference.attrs.keys()
    for name in resumed_store.attrs.keys() - {"dataset"}:  # the dataset path is relative in the run
        assert resumed_store.attrs[name] == reference.attrs[name], name


def selectivity_targets(models, dataset):
    names = ("units.tsv", "entropy_by_layer.png", "top_images.png", "heatmaps.png")
    return [f"results/selectivity/{model}/{dataset}/{name}" for model in models for name in names]


def test_corrupt_checkpoint_fails_its_jobs_and_keep_going_finishes_the_rest(tmp_path):
    workdir = tmp_path / "run"
    # A checkpoint cut off halfway, like an interrupted download.
    checkpoint = workdir / "checkpoints" / "broken-vit.pt"
    checkpoint.parent.mkdir(parents=True)
    model, _, _ = open_clip.create_model_and_transforms("clipmech-vit-tiny", pretrained=None)
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    models = {
        "random-vit": RANDOM_VIT,
        "broken-vit": {"architecture": "clipmech-vit-tiny", "pretrained": "checkpoints/broken-vit.pt"},
    }
    _, dataset = write_config(tmp_path / "broken.yaml", models)
    targets = selectivity_targets(models, dataset)

    result = snakemake(
        *targets, "--cores", "2", "--keep-going", "--configfile", tmp_path / "broken.yaml", workdir=workdir, check=False
    )  # fmt: skip
    assert result.returncode != 0
    assert "Error in rule extract_activations" in result.stdout + result.stderr
    error = (workdir / f"logs/extract_activations/broken-vit/{dataset}.log").read_text()
    assert "Traceback" in error
    broken_store = workdir / f"results/activations/broken-vit/{dataset}.zarr"
    assert not broken_store.exists() and not partial_path(broken_store).exists()

    # --keep-going ran every job that does not need the broken model, and their outputs stay valid:
    # what is left to do is exactly the broken model's chain.
    for target in selectivity_targets(["random-vit"], dataset):
        assert (workdir / target).stat().st_size > 0, target
    assert (workdir / f"results/activations/random-vit/{dataset}.zarr").is_dir()
    left = planned_jobs(*targets, "--configfile", tmp_path / "broken.yaml", workdir=workdir)
    assert left == {"extract_activations": 1, "neuron_selectivity": 1, "plot_selectivity": 1}


def test_missing_checkpoint_stops_before_any_job_runs(tmp_path):
    models = {"missing-vit": {"architecture": "clipmech-vit-tiny", "pretrained": "checkpoints/missing-vit.pt"}}
    write_config(tmp_path / "missing.yaml", models)
    result = snakemake("--cores", "2", "--configfile", tmp_path / "missing.yaml", workdir=tmp_path, check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "MissingInputException" in message and "checkpoints/missing-vit.pt" in message
    assert not (tmp_path / "results").exists()


def test_a_second_run_on_a_store_being_written_plans_nothing_and_deletes_nothing(tmp_path):
    """`snakemake --unlock` under a live extraction, then a second run: the DAG is not built while another
    process holds the store's writer lock, so nothing of the first run's store is touched."""
    store = tmp_path / "results" / "activations" / "tiny-vit" / "tiny-shapes.zarr"
    partial = partial_path(store)
    partial.mkdir(parents=True)
    (partial / "first-run.txt").write_text("the first run's chunks")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from clipmech.stores.locks import lock_store; lock_store({str(store)!r}); input()"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (store.parent / "tiny-shapes.zarr.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        result = snakemake("--cores", "1", "--configfile", TINY, workdir=tmp_path, check=False)
    finally:
        holder.communicate(b"\n", timeout=60)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{store.relative_to(tmp_path)} is being written by another process (pid {holder.pid})" in message
    assert (partial / "first-run.txt").read_text() == "the first run's chunks"
    assert not (tmp_path / "results" / "models").exists()  # no job ran
