"""The tiny config under SLURM, as researchers run the workflow on a cluster.

.ci/slurm/start.sh starts a single-node SLURM cluster on this machine (root, Debian; it exits 77
with a ``SKIP: <reason>`` line where it cannot, and the tests skip with that reason). The run uses
``--profile profiles/slurm --profile profiles/slurm-ci``: every job is an sbatch job running this
environment's Snakemake (PATH is exported to the jobs). SLURM's own records must show each job
COMPLETED, and the results must equal a local run's bit for bit (both runs give train_clip and
extract_activations the rule's 2 threads: local --cores 2, SLURM --cpus-per-task=2).
.ci/slurm/stop.sh cancels leftover jobs, stops the daemons and removes the /etc/slurm/slurm.conf
link, also when a test or the run fails. A second run, in a copy of the local run, writes the activation
store in 3 parts (extraction.parts), each part its own SLURM job, as a cluster's GPU jobs would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import xarray as xr
from snakemake_cli import ROOT, TINY, planned_jobs, snakemake

from clipmech.stores.activations import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

START, STOP = ROOT / ".ci" / "slurm" / "start.sh", ROOT / ".ci" / "slurm" / "stop.sh"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PROFILES = ("--profile", ROOT / "profiles" / "slurm", "--profile", ROOT / "profiles" / "slurm-ci")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster with its state in a temporary directory.

    Stopped when the module ends, when a test fails, on Ctrl-C, and on SIGTERM (a CI time limit),
    which raises KeyboardInterrupt while the cluster runs so that pytest tears this fixture down.
    """
    state = tmp_path_factory.mktemp("slurm-cluster")
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        started = subprocess.run([START, state], capture_output=True, text=True, timeout=900)
        if started.returncode == 77:
            reasons = [line for line in started.stdout.splitlines() if line.startswith("SKIP: ")]
            pytest.skip(reasons[-1] if reasons else f"start.sh exited 77 without a SKIP line:\n{started.stdout}")
        if started.returncode != 0:
            pytest.fail(f"start.sh exited {started.returncode}:\n{started.stdout}\n{started.stderr}", pytrace=False)
        yield state
    finally:
        stopped = subprocess.run([STOP, state], capture_output=True, text=True, timeout=120)
        signal.signal(signal.SIGTERM, previous_sigterm)
    assert stopped.returncode == 0, f"stop.sh failed:\n{stopped.stdout}\n{stopped.stderr}"
    assert not (SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == state / "slurm.conf")


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The working directory of the tiny config run through the SLURM profiles, and the jobs planned."""
    workdir = tmp_path_factory.mktemp("slurm-run")
    planned = planned_jobs("--configfile", TINY, workdir=workdir)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        snakemake("--configfile", TINY, *PROFILES, workdir=workdir, env=env, timeout=2700)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the SLURM run took over 45 min; SLURM's jobs (id state reason):\n{squeue('%i %T %r')}", pytrace=False
        )
    return workdir, planned


def squeue(fields: str) -> str:
    """``squeue`` lines of every job the cluster knows, finished ones too (start.sh keeps them an hour)."""
    return subprocess.run(
        ["squeue", "--states=all", "--noheader", f"--format={fields}"], capture_output=True, text=True, check=True
    ).stdout


def local_rules() -> set[str]:
    """The rules of workflow/rules/ marked ``localrule: True``."""
    return {
        match[1]
        for path in (ROOT / "workflow" / "rules").glob("*.smk")
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.DOTALL | re.MULTILINE)
        if "    localrule: True\n" in match[2]
    }


def test_every_job_ran_as_a_completed_slurm_job(slurm_run):
    workdir, planned = slurm_run
    # Snakemake runs rules without an action (the target rule `all`) and the local rules (the plot rules and the
    # paper comparisons: a figure or a table from tables, not worth a queue slot) itself, not as jobs.
    expected = Counter({rule: count for rule, count in planned.items() if rule != "all" and rule not in local_rules()})
    assert len(expected) < len(planned) - 1  # some plot rules were planned, and ran locally
    plots = [path for path in (workdir / "results").rglob("*.png")]
    assert {path.name for path in plots} >= {"entropy_by_layer.png", "circuit.png", "norms.png", "training.png"}
    logs = list((workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    submitted = Counter(
        log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_") for log in logs
    )
    assert submitted == expected
    job_ids = {log.stem for log in logs}
    assert len(job_ids) == len(logs)
    states = dict(line.split() for line in squeue("%i %T").splitlines())  # the cluster runs only this module's jobs
    assert set(states) == job_ids
    assert set(states.values()) == {"COMPLETED"}, states


def test_slurm_results_equal_a_local_run(slurm_run, tiny_run):
    workdir, _ = slurm_run
    local, remote = tiny_run / "results", workdir / "results"

    datasets = sorted(p.relative_to(local) for p in (local / "datasets").rglob("*") if p.is_file())
    assert datasets and datasets == sorted(
        p.relative_to(remote) for p in (remote / "datasets").rglob("*") if p.is_file()
    )
    for path in datasets:
        assert (local / path).read_bytes() == (remote / path).read_bytes(), path

    for name in ("checkpoint.pt", "losses.tsv"):
        assert (local / "models/tiny-vit" / name).read_bytes() == (remote / "models/tiny-vit" / name).read_bytes(), name
    metrics = [json.loads((root / "models/tiny-vit/metrics.json").read_text()) for root in (local, remote)]
    for record in metrics:
        del record["train_seconds"]  # wall time
    assert metrics[0] == metrics[1]

    stores = [open_store(root / "activations/tiny-vit/tiny-shapes.zarr") for root in (local, remote)]
    xr.testing.assert_identical(stores[0], stores[1])

    for name in ("units.tsv", "topk.tsv", "null.tsv"):
        path = Path("selectivity/tiny-vit/tiny-shapes") / name
        assert (local / path).read_bytes() == (remote / path).read_bytes(), path


def test_store_in_parts_runs_as_slurm_jobs(slurm_cluster, tiny_run, tmp_path):
    """extraction.parts = 3 through the SLURM profiles, in a copy of the local tiny run without its store: the
    template job, the 3 part jobs and the publishing job each run as a SLURM job that completes, and the store
    they write equals the one-job store byte for byte."""
    workdir, store = tmp_path / "run", "results/activations/tiny-vit/tiny-shapes.zarr"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    shutil.rmtree(workdir / store)
    config = tmp_path / "parts.yaml"
    config.write_text(TINY.read_text().replace("\nextraction:\n", "\nextraction:\n  parts: 3\n", 1))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    snakemake(store, "--configfile", config, *PROFILES, workdir=workdir, env=env, timeout=900)

    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    logs = list(slurm_logs.glob("rule_*/**/*.log"))
    submitted = Counter(log.relative_to(slurm_logs).parts[0].removeprefix("rule_") for log in logs)
    assert submitted == {"begin_activations": 1, "extract_activations_part": 3, "publish_activations": 1}
    states = dict(line.split() for line in squeue("%i %T").splitlines())
    assert {states[log.stem] for log in logs} == {"COMPLETED"}

    def files(path):
        return {file.relative_to(path): file.read_bytes() for file in sorted(path.rglob("*")) if file.is_file()}

    assert files(workdir / store) == files(tiny_run / store)
