"""The workflow's Snakemake command line as tests call it, and what a dry run plans.

Every call is ``python -m snakemake --snakefile <Snakefile> --directory <workdir> ...`` with this
interpreter, so the Snakemake under test (and, through the exported PATH, the one SLURM jobs run)
is the test environment's. Imported by the integration tests (pytest puts ``tests/`` on sys.path).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
TINY = ROOT / "tests" / "config" / "tiny.yaml"
PAPER = ROOT / "config" / "paper.yaml"


def paper_locations(folder: Path) -> dict:
    """The override of config/paper.yaml that sets every null dataset location (clipmech.config.LOCATIONS, and
    a captions dataset's null ``instances``) to a path under ``folder``, named after the dataset: enough for
    the parse, the plan and a dry run, none of which reads the data."""
    from clipmech.config import LOCATIONS, read_yaml

    override = {}
    for name, entry in read_yaml(PAPER)["datasets"].items():
        keys = [LOCATIONS[entry["kind"]][0]] if entry["kind"] in LOCATIONS else []
        keys += ["instances"] if entry["kind"] == "captions" else []
        unset = {key: str(folder / name / key) for key in keys if entry.get(key) is None}
        if unset:
            override[name] = unset
    return {"datasets": override}


def located(raw: dict, override: dict) -> dict:
    """``raw`` (a config mapping) with the dataset keys of ``override`` (:func:`paper_locations`) set in place."""
    for name, keys in override["datasets"].items():
        raw["datasets"][name].update(keys)
    return raw


def snakemake(*args, workdir, snakefile=SNAKEFILE, check=True, timeout=1200, env=None):
    """Run Snakemake on ``workdir``; with ``check``, fail with the tail of its output on a non-zero exit.

    Put targets before options that take several values (``--configfile a.yaml target`` reads
    ``target`` as a second config file).
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(snakefile),
            "--directory",
            str(workdir),
            *map(str, args),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def planned_jobs(*args, workdir, **kwargs) -> dict[str, int]:
    """Jobs per rule that a dry run with ``args`` would run in ``workdir`` (empty when nothing is to be done).

    Parses the "Job stats" table of ``snakemake --dry-run --quiet rules``.
    """
    out = snakemake(*args, "--quiet", "rules", "--dry-run", workdir=workdir, **kwargs).stdout
    if "Nothing to be done" in out:
        return {}
    lines = out.splitlines()
    try:
        first = lines.index("Job stats:") + 3  # after the title, the header and the rule line
    except ValueError:
        raise AssertionError(f"no job table in the dry run's output:\n{out[-4000:]}") from None
    jobs = {}
    for line in lines[first:]:
        rule, count = line.split()
        if rule == "total":
            return jobs
        jobs[rule] = int(count)
    raise AssertionError(f"job table without a total line:\n{out[-4000:]}")
