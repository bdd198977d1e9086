"""benchmarks/gpu/run.sh keeps working without a GPU: its smoke run on the CPU, its package check, its pins."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from snakemake_cli import ROOT

RUN = ROOT / "benchmarks" / "gpu" / "run.sh"


def run_sh(*args, env=None, timeout=300):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(["bash", str(RUN), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_run_writes_every_figure(tmp_path):
    result = run_sh("--smoke", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = (tmp_path / "figures.txt").read_text()
    for expected in (
        "== benchmarks/extraction.py",
        "precision bf16:\n  bare forward:",
        "ratio extraction / bare forward: median",
        "bare forward speed-up over fp32:",
        "ratio loop / batched:",
        "batched metrics vs fp32: max |difference|",
        "throughput ratio ours / sparsify:",
        "streaming ratio stream / random reads:",
    ):
        assert expected in figures, expected
    assert "latents held sparse" not in figures  # part 3 is left out
    assert "torch" in (tmp_path / "environment.txt").read_text()


def test_missing_package_is_named_and_needs_wheels(tmp_path):
    """A package that does not import is listed; without --wheels the script stops, with an empty folder too."""
    shadow = tmp_path / "shadow" / "nnsight"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": str(tmp_path / "shadow"), "TMPDIR": str(tmp_path)}
    result = run_sh("--out", str(tmp_path / "out"), env=env, timeout=120)
    assert result.returncode == 2
    assert "missing: nnsight; rerun with --wheels DIR, DIR filled by 'make gpu-wheels'" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_sh("--wheels", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), env=env, timeout=120)
    assert result.returncode == 2 and "installing benchmarks/gpu/requirements.txt" in result.stdout


def test_wheel_list_is_pinned_as_the_lock():
    """Every package run.sh installs has the version of requirements.lock, the one the tests ran with."""
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;]+)", line)
        if match:
            lock[match.group(1).lower()] = match.group(2)
    pins = [
        line.split("==")
        for line in (ROOT / "benchmarks" / "gpu" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins and {name: lock.get(name) for name, _ in pins} == dict(pins)
