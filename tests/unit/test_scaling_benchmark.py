"""benchmarks/scaling.py reads Snakemake's benchmark files into a table of ratios (the runs themselves are
too long for the tests: ``python benchmarks/scaling.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("scaling", ROOT / "benchmarks" / "scaling.py")
scaling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scaling)


def write_benchmarks(workdir: Path, jobs: dict) -> None:
    for (rule, name), (seconds, rss) in jobs.items():
        path = workdir / "results" / "benchmarks" / rule / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"s": [seconds], "max_rss": [rss]}).to_csv(path, sep="\t", index=False)


def test_time_sums_and_rss_peaks_over_a_rules_jobs(tmp_path):
    write_benchmarks(
        tmp_path, {("extract", "a"): (2.0, 100.0), ("extract", "b"): (3.0, 150.0), ("sae", "a"): (1.0, 50.0)}
    )
    table = scaling.collect(tmp_path)
    assert table.loc["extract"].tolist() == [5.0, 150.0] and table.loc["sae"].tolist() == [1.0, 50.0]


def test_ratios_and_goals():
    small = pd.DataFrame({"s": [1.0, 1.0], "max_rss": [100.0, 100.0]}, index=pd.Index(["flat", "grows"], name="rule"))
    large = pd.DataFrame({"s": [16.0, 30.0], "max_rss": [120.0, 400.0]}, index=small.index)
    table = scaling.scaling_table({1000: small, 16000: large})
    assert table["time_ratio"].tolist() == [16.0, 30.0] and table["rss_ratio"].tolist() == [1.2, 4.0]
    assert table["meets_goals"].tolist() == [True, False]


def test_the_scaled_config_changes_the_shapes_size_only(tmp_path):
    tiny = yaml.safe_load(scaling.TINY.read_text())
    scaled = yaml.safe_load(scaling.scaled_config(tmp_path, 1000).read_text())
    assert scaled["datasets"]["tiny-shapes"]["n_per_count"] == 200
    scaled["datasets"]["tiny-shapes"]["n_per_count"] = tiny["datasets"]["tiny-shapes"]["n_per_count"]
    assert scaled == tiny
