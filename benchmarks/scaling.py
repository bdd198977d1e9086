"""How each stage's time and peak memory grow with the number of images: the tiny DAG at several sizes.

Runs the whole workflow on ``tests/config/tiny.yaml`` with its Shapes dataset (``tiny-shapes``, 64 px)
resized to each of ``--sizes`` images (``n_per_count`` = size / 5 object counts), each size in its own
working directory, and reads the benchmark file Snakemake writes for every job
(``results/benchmarks/<rule>/...tsv``: wall seconds ``s`` and peak resident memory ``max_rss`` in MB).
Per rule it prints the seconds (summed over the rule's jobs) and the peak RSS (the largest of its jobs) at
each size, and the ratios largest / smallest size. A stage that streams over images keeps its peak RSS
flat (goal: ratio <= 1.5 for a 16x larger dataset) and its time linear or better (goal: ratio <= 20);
rules flagged ``!`` miss a goal. What does not depend on the dataset's size (training the tiny models on
their own scene stream, the minimal pairs, the shift splits) runs at every size alike.

    python benchmarks/scaling.py --sizes 1000 4000 16000 --cores 2
    python benchmarks/scaling.py --until decompose_attnpool ablate_components  # one family and what it needs

Models, the pairs dataset and the other settings stay those of the tiny config, so the numbers isolate
the number of images; at 16,000 images the run takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "config" / "tiny.yaml"
#: Goals for the largest / smallest size when that is 16 (scaled linearly for other spans).
RSS_GOAL, TIME_GOAL_PER_SIZE_RATIO = 1.5, 20 / 16


def scaled_config(directory: Path, n_images: int) -> Path:
    """tests/config/tiny.yaml with tiny-shapes at ``n_images`` images (rounded down to a multiple of 5)."""
    config = yaml.safe_load(TINY.read_text())
    shapes = config["datasets"]["tiny-shapes"]
    counts = shapes.get("max_objects", 5) - shapes.get("min_objects", 1) + 1
    shapes["n_per_count"] = max(1, n_images // counts)
    path = directory / "scaled.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_size(workdir: Path, n_images: int, cores: int, until: list[str] | None = None) -> None:
    config = scaled_config(workdir, n_images)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", str(cores)]
    command += ["--configfile", str(config), "--directory", str(workdir), "--quiet", "rules"]
    if until:
        command += ["--until", *until]
    subprocess.run(command, check=True, cwd=workdir)


def collect(workdir: Path) -> pd.DataFrame:
    """Per rule: ``s`` (seconds, summed over its jobs) and ``max_rss`` (MB, the largest of its jobs)."""
    rows = []
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "results" / "benchmarks").parts[0]
        table = pd.read_csv(path, sep="\t")
        rows.append({"rule": rule, "s": float(table["s"].iloc[-1]), "max_rss": float(table["max_rss"].iloc[-1])})
    if not rows:
        return pd.DataFrame(columns=["s", "max_rss"]).rename_axis("rule")
    return pd.DataFrame(rows).groupby("rule").agg(s=("s", "sum"), max_rss=("max_rss", "max"))


def scaling_table(by_size: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per rule: s and RSS at each size, the ratios largest / smallest and whether they meet the goals."""
    sizes = sorted(by_size)
    small, large = sizes[0], sizes[-1]
    table = pd.concat({size: by_size[size] for size in sizes}, axis=1)
    table.columns = [f"{stat}@{size}" for size, stat in table.columns]
    table["time_ratio"] = table[f"s@{large}"] / table[f"s@{small}"]
    table["rss_ratio"] = table[f"max_rss@{large}"] / table[f"max_rss@{small}"]
    span = large / small
    table["meets_goals"] = (table["rss_ratio"] <= RSS_GOAL) & (table["time_ratio"] <= TIME_GOAL_PER_SIZE_RATIO * span)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the runs in this directory (default: a temporary one)")
    parser.add_argument(
        "--until",
        nargs="+",
        metavar="RULE",
        help="run only these rules and what they need (Snakemake's --until); name the last rules of a family only: "
        "one upstream of another named rule stops Snakemake with 'Out of jobs ready' (its issue 823)",
    )
    args = parser.parse_args()
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two sizes")
    base = args.keep or Path(tempfile.mkdtemp(prefix="clipmech-scaling-"))
    try:
        by_size = {}
        for size in sorted(args.sizes):
            workdir = base / f"n{size}"
            workdir.mkdir(parents=True, exist_ok=True)
            run_size(workdir, size, args.cores, args.until)
            by_size[size] = collect(workdir)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    table = scaling_table(by_size)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string())
    missed = table.index[~table["meets_goals"]].tolist()
    print(f"{len(table) - len(missed)} of {len(table)} rules meet the goals; missed: {', '.join(missed) or 'none'}")


if __name__ == "__main__":
    main()
