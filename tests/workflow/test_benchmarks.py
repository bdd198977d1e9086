"""The benchmarks still run against the package: each script once on tiny inputs (no timing asserted;
speed targets are read off the full runs of ``make benchmark``)."""

import subprocess
import sys

import pytest
from snakemake_cli import ROOT


@pytest.mark.parametrize(
    "script, args, expected",
    [
        (
            "extraction.py",
            ["--model", "clipmech-vit-tiny", "--images", "8", "--batch-size", "4", "--repeats", "1"],
            "ratio extraction / bare forward: median",
        ),
        ("preprocess.py", ["--images", "4", "--image-size", "64", "--repeats", "1"], "speed-up:"),
        (
            "patching.py",
            "--pairs 2 --families resid_pre,mlp_out --positions 2 --batch-size 5 --repeats 1".split(),
            "ratio loop / batched:",
        ),
        (
            "sae.py",
            [
                *("--d", "16", "--atoms", "32", "--k-true", "2", "--images", "40", "--tokens-per-image", "9"),
                *("--chunk-images", "8", "--expansion", "2", "--k", "2", "--steps", "5", "--batch-size", "32"),
                *("--buffer-tokens", "128", "--random-reads", "10"),
                *("--eval-latents", "64", "--eval-k", "4", "--eval-images", "6", "--eval-tokens", "10"),
                *("--eval-d", "16"),
            ],
            "scores agreement: AUROCs and Purity equal True, entropy equal True",
        ),
        (
            "omp.py",
            ["--n-atoms", "200", "--dim", "16", "--n-nonzero", "4", "--targets", "20", "--sklearn-subset", "5"],
            "support agreement (same atom set): 1.0000",
        ),
    ],
)
def test_benchmark_runs(script, args, expected):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert expected in result.stdout, result.stdout
