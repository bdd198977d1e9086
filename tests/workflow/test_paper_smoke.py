"""The papers' configuration end to end: config/paper.yaml with tests/config/paper-smoke.yaml over it and the dataset
locations of tiny natural-image trees (toys.paper_copies), so every rule of the papers' run runs on the papers'
architectures with random weights at a 2 x 2 patch grid (the budgets of paper-smoke.yaml). SigLIP's text tower
reads a stand-in of its Hugging Face tokenizer written into an offline Hub cache (toys.cache_siglip_tokenizer)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_cli import PAPER, ROOT, paper_locations, planned_jobs, snakemake
from toys import COCO_CAPTIONS, cache_siglip_tokenizer, paper_copies

from clipmech.config import load_config, read_yaml
from clipmech.papers import numbers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMOKE = ROOT / "tests" / "config" / "paper-smoke.yaml"
#: Rules of the papers' run that need CIFAR-10, which no tiny copy can stand in for (see paper-smoke.yaml); its
#: index_images job too.
CIFAR_RULES = {"tsne_cifar10", "plot_tsne_cifar10"}


def merged(*configs) -> dict:
    """Config files (paths) or mappings merged as Snakemake merges ``--configfile`` files: later ones update
    nested keys."""

    def update(base: dict, other: dict) -> dict:
        for key, value in other.items():
            base[key] = update(base.get(key, {}), value) if isinstance(value, dict) else value
        return base

    config = {}
    for other in configs:
        update(config, other if isinstance(other, dict) else read_yaml(other))
    return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-smoke")
    located = without_cifar(paper_copies(root / "data", n_imagenet=8))
    locations = root / "locations.yaml"
    locations.write_text(yaml.safe_dump(located))
    hub = root / "hub"
    cache_siglip_tokenizer(hub, "ViT-SO400M-14-SigLIP", COCO_CAPTIONS)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    workdir = root / "run"
    workdir.mkdir()
    configs = ("--configfile", PAPER, SMOKE, locations)
    planned = planned_jobs(*configs, workdir=workdir, env=env)
    snakemake("--cores", "2", *configs, workdir=workdir, env=env, timeout=3000)
    return workdir, configs, env, planned


def test_the_smoke_keeps_every_model_dataset_and_analysis_of_the_paper_config():
    """paper-smoke.yaml shrinks budgets only: the same models, datasets and sections, every model with random
    weights, and the lists that choose what runs (models, datasets, sites, corruptions, units) untouched."""
    paper, smoke = read_yaml(PAPER), read_yaml(SMOKE)
    assert set(smoke["models"]) == set(paper["models"])
    assert set(smoke["datasets"]) <= set(paper["datasets"])
    assert all(entry["pretrained"] is None for entry in smoke["models"].values())
    chosen = {
        "analyses": ["models", "datasets"],
        "zeroshot": ["models", "datasets"],
        "decomposition": ["models", "datasets"],
        "patching": ["models", "datasets", "corruptions", "directions", "families", "concepts"],
        "sae": ["models", "sites", "tokens"],
        "miclip": ["dataset", "units", "reference", "seeds"],
        "extraction": ["sites", "reductions", "save_tokens"],
    }
    for section, keys in chosen.items():
        assert not set(keys) & set(smoke.get(section, {})), f"paper-smoke.yaml changes what {section} runs"
    locations = without_cifar(paper_locations(Path("/data")))  # the parse reads no path
    smoke_plan = load_config(merged(PAPER, SMOKE, locations)).plan
    paper_plan = load_config(merged(PAPER, locations, {"tsne": {"cifar10": None}})).plan
    assert smoke_plan == paper_plan  # every (model, dataset) of every analysis, as the papers' run plans them


def without_cifar(locations: dict) -> dict:
    """A dataset locations override (toys.paper_copies, snakemake_cli.paper_locations) without CIFAR-10's, as the
    smoke run has it."""
    del locations["datasets"]["cifar10-test"]
    return locations


def test_every_rule_of_the_paper_run_ran_and_a_second_run_plans_nothing(smoke_run, tmp_path):
    workdir, configs, env, planned = smoke_run
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump(paper_locations(tmp_path / "data")))
    full = planned_jobs("--configfile", PAPER, roots, workdir=tmp_path, env=env)
    assert set(full) - set(planned) == CIFAR_RULES
    assert {rule: n for rule, n in full.items() if rule not in CIFAR_RULES} == {
        rule: n + (rule == "index_images") for rule, n in planned.items()
    }
    assert planned_jobs(*configs, workdir=workdir, env=env) == {}


def test_every_table_the_paper_comparisons_read_was_produced(smoke_run):
    """Each paper's comparison finds every result table the run plans ('not run' marks one the config did not
    produce) and puts numbers of ours beside the paper's."""
    workdir, _, _, _ = smoke_run
    for paper in numbers.PAPERS:
        table = pd.read_csv(workdir / f"results/papers/{paper}.tsv", sep="\t")
        assert "not run" not in set(table["status"]), paper
        compared = table[table["status"] == "compared"]
        assert compared["ours"].notna().all(), paper
        if paper != "shapes-superposition":  # the poster gives no number
            assert len(compared) > 0, paper
