"""pyproject.toml, environment.yml and requirements.lock must agree: environment.yml lists the same
dependencies with the same bounds and the same Python, and the lock pins every direct dependency
(the `test` extra included) at a version inside pyproject's bounds."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _lock_pins() -> dict[str, set[str]]:
    """Package name -> the versions the lock pins it at (several only where markers split it)."""
    pins: dict[str, set[str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"unpinned line in requirements.lock: {line}"
            pins.setdefault(_name(requirement.name), set()).add(specifier.version)
    return pins


def test_pyproject_and_environment_agree():
    project = _project()
    env = _environment()
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert sorted(map(_normalise, project["dependencies"])) == sorted(_normalise(r) for r in pip if r != "-e .")
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert _normalise(python) == "python" + _normalise(project["requires-python"])


def test_lock_pins_every_direct_dependency_within_its_bounds():
    project = _project()
    pins = _lock_pins()
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(line)
        versions = pins.get(_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements.lock: run `make lock`"
        outside = [v for v in versions if not requirement.specifier.contains(v, prereleases=True)]
        assert not outside, f"requirements.lock pins {requirement.name}=={outside[0]}, outside {line}: run `make lock`"
