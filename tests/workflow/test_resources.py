"""Every rule declares the portable resources a cluster needs: memory and wall time.

Snakemake passes them on to any executor (profiles/slurm turns mem_mb into --mem and runtime into
--time); a rule without them gets a profile's default-resources, which fit nothing in particular. Both
are functions of the config and the job (clipmech.resources): the tiny run's measured peaks stay under
the declared memory, the memory formula grows at least as fast as the code's peak (and not much faster),
and ``python -m clipmech plan`` lists the jobs and memory the DAG declares.
Threads default to 1 and GPUs to none, so only rules that use more declare them; a rule that runs
a model on ``extraction.device`` (CUDA when present) declares ``gpu=CONFIG.extraction.gpus``: one GPU, none
when the device is ``cpu`` (a CPU-only cluster gets no GPU request).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake_cli import ROOT, TINY, snakemake

from clipmech import resources as rule_resources
from clipmech.config import load_config

RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", re.DOTALL | re.MULTILINE)
RESOURCES = re.compile(r"^    resources:\n((?:        .*\n)+)", re.MULTILINE)


def rules():
    """(file name, rule name, body) of every rule in workflow/rules/."""
    return [
        (path.name, match[1], match[2])
        for path in sorted((ROOT / "workflow" / "rules").glob("*.smk"))
        for match in RULE.finditer(path.read_text())
    ]


def test_rule_files_define_rules():
    assert {"extract_activations", "train_clip", "neuron_selectivity"} <= {name for _, name, _ in rules()}


@pytest.mark.parametrize(("file", "rule", "body"), rules(), ids=[rule for _, rule, _ in rules()])
def test_rule_declares_memory_and_runtime(file, rule, body):
    declared = resources(body)
    assert {"mem_mb", "runtime"} <= declared, f"rule {rule} ({file}) declares only {sorted(declared)}"


@pytest.mark.parametrize(("file", "rule", "body"), rules(), ids=[rule for _, rule, _ in rules()])
def test_rule_that_is_not_local_writes_a_benchmark(file, rule, body):
    """Every job a cluster runs records its wall time and peak memory where benchmarks/scaling.py and the tiny
    run's memory check read them: results/benchmarks/<rule>/<its log's wildcards>.tsv."""
    if "localrule: True" in body or rule == "all":
        return
    log = re.search(r'^    log:\n        "logs/(.*)\.log",$', body, re.MULTILINE)
    benchmark = re.search(r'^    benchmark:\n        "(.*)"$', body, re.MULTILINE)
    assert benchmark, f"rule {rule} ({file}) writes no benchmark file"
    assert log and benchmark[1] == f"results/benchmarks/{log[1]}.tsv", f"rule {rule} ({file}): {benchmark[1]}"


@pytest.mark.parametrize(("file", "rule", "body"), rules(), ids=[rule for _, rule, _ in rules()])
def test_rule_on_the_extraction_device_declares_a_gpu(file, rule, body):
    """Rules that run a model where ``extraction.device`` says (CUDA when present) ask for a GPU."""
    if re.search(r"CONFIG\.extraction\.(device|params\(\))", body):
        assert "gpu" in resources(body), f"rule {rule} ({file}) runs a model on the extraction device without gpu"
        assert "gpu=CONFIG.extraction.gpus," in body, (
            f"rule {rule} ({file}): its GPU request must follow extraction.device"
        )


def gpu_rules():
    return sorted(rule for _, rule, body in rules() if "gpu=CONFIG.extraction.gpus" in body)


@pytest.mark.parametrize(("device", "gpus"), [("cpu", "0"), ("cuda", "1"), ("auto", "1")])
def test_gpu_request_follows_the_extraction_device(tmp_path, device, gpus):
    """Every job of a GPU rule asks for ``gpus`` GPUs (the dry run prints the resources of each job)."""
    config = tmp_path / "config.yaml"
    config.write_text(TINY.read_text().replace("device: cpu", f"device: {device}"))
    out = snakemake("-n", "--configfile", config, workdir=tmp_path).stdout
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", out, re.DOTALL | re.MULTILINE)
    requested = {rule: re.search(r"resources: .*\bgpu=(\d+)", body)[1] for rule, body in jobs if rule in gpu_rules()}
    assert requested and set(requested.values()) == {gpus}, requested


def resources(body: str) -> set[str]:
    """Names in a rule's ``resources:`` block."""
    block = RESOURCES.search(body)
    return {line.strip().split("=")[0] for line in block[1].splitlines()} if block else set()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> list[dict]:
    """Every job of the tiny config as a dry run in an empty directory plans it: rule, wildcards, benchmark
    file and mem_mb."""
    workdir = tmp_path_factory.mktemp("resources-dry-run")
    out = snakemake("-n", "--configfile", TINY, workdir=workdir).stdout
    jobs = []
    for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", out, re.DOTALL | re.MULTILINE):
        if rule == "all":
            continue
        wildcards = re.search(r"^    wildcards: (.*)$", body, re.MULTILINE)
        benchmark = re.search(r"^    benchmark: (.*)$", body, re.MULTILINE)
        jobs.append(
            {
                "rule": rule,
                "wildcards": dict(item.split("=", 1) for item in wildcards[1].split(", ")) if wildcards else {},
                "benchmark": benchmark[1] if benchmark else None,
                "mem_mb": int(re.search(r"\bmem_mb=(\d+)", body)[1]),
            }
        )
    return jobs


@pytest.mark.integration
def test_the_plan_lists_the_jobs_and_memory_the_dag_declares(dry_run):
    """``python -m clipmech plan`` (clipmech.resources.plan_jobs) enumerates the DAG's jobs, each with its mem_mb."""
    planned = {
        (job.rule, tuple(sorted(job.wildcards.items()))): job.mem_mb
        for job in rule_resources.plan_jobs(load_config(yaml.safe_load(TINY.read_text())))
    }
    declared = {(job["rule"], tuple(sorted(job["wildcards"].items()))): job["mem_mb"] for job in dry_run}
    assert planned == declared


@pytest.mark.integration
def test_declared_memory_bounds_the_tiny_runs_peaks(tiny_run, dry_run):
    """Every benchmarked job of the tiny run peaked (max_rss, MB) below the mem_mb it declares."""
    declared = {job["benchmark"]: job for job in dry_run if job["benchmark"]}
    measured = sorted((tiny_run / "results" / "benchmarks").rglob("*.tsv"))
    assert len(measured) == len(declared)
    over = []
    for path in measured:
        job = declared[str(path.relative_to(tiny_run))]
        peak = pd.read_csv(path, sep="\t")["max_rss"].max()
        if not peak < job["mem_mb"]:
            over.append(f"{job['rule']} {job['wildcards']}: {peak:.0f} MB measured, {job['mem_mb']} declared")
    assert not over, over


#: Runs rule decompose_attnpool's stage on a fresh Shapes dataset of 5 x argv[2] images and its tiny-RN
#: attention-pool store, and prints the peak bytes tracemalloc saw (numpy's buffers included).
PEAK = """
import sys, tracemalloc
from pathlib import Path
from clipmech.data import shapes
from clipmech.models.loading import ModelSpec
from clipmech.stores import attnpool_extraction
from clipmech.stages.decompose_attnpool import decompose_attnpool
root, n_per_count, chunk = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
shapes.build(root / "data", shapes.ShapesSpec(n_per_count=n_per_count, image_size=64, seed=0))
model = ModelSpec("tiny-rn", "clipmech-rn-tiny", None)
store = attnpool_extraction.extract_attnpool(model, root / "data", root / "s.zarr", batch_size=16, device="cpu", code="")
out = {name: str(root / name) for name in ("pairs", "summary", "scores")}
tracemalloc.start()
decompose_attnpool(store=str(store), out=out, decomposition={"chunk_size": chunk, "n_checked": 20, "pc_top_k": 50, "max_rel_err": 1e-3})
print(tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.integration
def test_decomposition_memory_stays_flat_in_the_images(tmp_path):
    """From 40 to 320 images the peak of decompose_attnpool's stage grows by less than a quarter (it streams the
    store: 14.0 -> 15.2 MB measured; 14.9 -> 53.2 MB when it held s (N, H, C)), and the declared memory grows by
    the per-image scalars only."""
    raw = yaml.safe_load(TINY.read_text())
    chunk = raw["decomposition"]["chunk_size"]
    peaks, held = [], []
    for n_per_count in (8, 64):
        workdir = tmp_path / str(n_per_count)
        workdir.mkdir()
        command = [sys.executable, "-c", PEAK, str(workdir), str(n_per_count), str(chunk)]
        result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
        peaks.append(int(result.stdout.split()[-1]))
        raw["datasets"]["tiny-shapes"]["n_per_count"] = n_per_count
        estimate = rule_resources.RuleResources(load_config(raw)).estimate(
            "decompose_attnpool", {"model": "tiny-rn", "dataset": "tiny-shapes"}
        )
        held.append(sum(estimate.host.values()))
    assert peaks[1] < 1.25 * peaks[0], json.dumps({"peaks": peaks})
    assert held[1] - held[0] == pytest.approx(280 * 8 * rule_resources.FLOAT64)
