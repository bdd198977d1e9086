"""Every rule declares the portable resources a cluster needs: memory and wall time.

Snakemake passes them on to any executor (profiles/slurm turns mem_mb into --mem and runtime into
--time); a rule without them gets a profile's default-resources, which fit nothing in particular.
Threads default to 1 and GPUs to none, so only rules that use more declare them; a rule that runs
a model on ``extraction.device`` (CUDA when present) declares ``gpu=CONFIG.extraction.gpus``: one GPU, none
when the device is ``cpu`` (a CPU-only cluster gets no GPU request).
"""

from __future__ import annotations

import re

import pytest
from snakemake_cli import ROOT, TINY, snakemake

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
