"""clipmech.runner binds a stage's keywords by name from a Snakemake job."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from snakemake.iocontainers import Namedlist

from clipmech.runner import bind


@dataclass(frozen=True)
class Spec:
    name: str
    size: int


def job(input=None, output=None, params=None, wildcards=None, threads=1):
    return SimpleNamespace(
        input=Namedlist(fromdict=input or {}),
        output=Namedlist(fromdict=output or {}),
        params=Namedlist(fromdict=params or {}),
        wildcards=Namedlist(fromdict=wildcards or {}),
        threads=threads,
        log=["unused.log"],
    )


def stage(*, store: str, files: list, out: dict, model: Spec, site: str, threads: int, label: str = "x"):
    return None


def test_each_keyword_from_the_rule_name_it_carries():
    found = bind(
        stage,
        job(
            input={"store": "a.zarr", "files": Namedlist(["f1", "f2"])},
            output={"table": "t.tsv", "figure": "f.png"},
            params={"model": {"name": "m", "size": 3}, "code": "abc"},
            wildcards={"model": "m", "site": "visual.blocks.0.hook_mlp_out"},
            threads=2,
        ),
    )
    assert found == {
        "store": "a.zarr",
        "files": ["f1", "f2"],
        "out": {"table": "t.tsv", "figure": "f.png"},
        "model": Spec(name="m", size=3),  # params before wildcards; a dataclass built from the mapping
        "site": "visual.blocks.0.hook_mlp_out",
        "threads": 2,
    }


def test_a_default_stays_when_the_rule_names_nothing():
    found = bind(stage, job(input={"store": "s", "files": []}, params={"model": {"name": "m", "size": 1}, "site": "s"}))
    assert "label" not in found


def test_a_missing_keyword_names_the_stage_and_what_the_rule_offers():
    with pytest.raises(TypeError, match=r"stage stage needs 'store'.*files, model, site"):
        bind(stage, job(input={"files": []}, params={"model": {"name": "m", "size": 1}, "site": "s"}))


def test_inputs_and_out_take_every_named_file():
    def takes(*, inputs: dict, out: dict):
        return None

    files = job(input={"a": "a.tsv", "b": Namedlist(["b1"])}, output={"c": "c.png"})
    assert bind(takes, files) == {"inputs": {"a": "a.tsv", "b": ["b1"]}, "out": {"c": "c.png"}}


def test_params_pass_as_they_are():
    def takes(*, units: list, code: str):
        return None

    units = [{"site": "s", "kind": "sae"}]
    assert bind(takes, job(params={"units": units, "code": "abc"}))["units"] == units


def test_a_name_in_two_places_is_refused():
    def takes(*, circuit: str):
        return None

    with pytest.raises(TypeError, match="names 'circuit' in input and output"):
        bind(takes, job(input={"circuit": "c.tsv"}, output={"circuit": "c.png"}))
