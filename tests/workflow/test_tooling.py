"""The tree passes `ruff check` and `ruff format --check` under the configuration in pyproject.toml
(the same commands as `make lint`), run with the ruff of the interpreter running the tests."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_clean(args):
    result = subprocess.run([sys.executable, "-m", "ruff", *args, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff {' '.join(args)} .\n{result.stdout}{result.stderr}"
