"""The Snakefile loads the config through clipmech.config: a config mistake fails the dry run at parse
time, naming the key and the allowed values; which config a run reads; what the plan makes the DAG run.

Every cross-key check is unit-tested on mappings in tests/unit/test_config.py; the cases here edit
tests/config/tiny.yaml (40 images in tiny-shapes) and run ``snakemake -n``. Also here: which config a
run reads (the user's file alone, never merged with config/config.yaml).
"""

from __future__ import annotations

import shutil

import yaml
from snakemake_cli import PAPER, ROOT, TINY, paper_locations, planned_jobs, snakemake


def tiny():
    return yaml.safe_load(TINY.read_text())


def write(tmp_path, config):
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rejected(tmp_path, config) -> str:
    """The dry run's output; asserts that it failed at parse time, before planning a job."""
    result = snakemake("-n", "--configfile", write(tmp_path, config), workdir=tmp_path, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message[-2000:]
    assert "Job stats" not in message and "ValueError" in message, message[-2000:]
    return " ".join(message.split())  # the messages may be wrapped


def test_cross_key_check_stops_the_dry_run(tmp_path):
    config = tiny()
    config["selectivity"]["k"] = 41
    assert "selectivity.k = 41 exceeds the 40 images of dataset 'tiny-shapes'" in rejected(tmp_path, config)


def test_schema_error_stops_the_dry_run(tmp_path):
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.-1.hook_resid_pre"]
    assert "'visual.blocks.-1.hook_resid_pre' does not match" in rejected(tmp_path, config)


def test_a_cifar10_dataset_plans_the_map_and_the_old_section_is_refused(tmp_path):
    config = tiny()
    config["datasets"]["cifar"] = {"kind": "cifar10", "root": str(tmp_path / "cifar")}
    config["tsne"]["cifar10"] = "cifar"
    # CIFAR-10 has classes: classified zero-shot by default, which needs templates.
    assert "zeroshot.datasets (null: every located dataset with classes) ['cifar']" in rejected(tmp_path, config)
    config["zeroshot"] = {"templates": ["a photo of a {}."]}
    jobs = planned_jobs("--configfile", write(tmp_path, config), workdir=tmp_path)
    assert jobs["tsne_cifar10"] == jobs["plot_tsne_cifar10"] == jobs["index_images"] == jobs["zero_shot"] == 1
    del config["tsne"]["cifar10"]
    config["cifar10"] = {"root": str(tmp_path / "cifar")}
    assert "the cifar10 section moved" in rejected(tmp_path, config)


# --- which config, which trainings -----------------------------------------------------------------


def test_user_configfile_plans_the_same_next_to_a_default_config(tmp_path):
    """A working directory with config/config.yaml (the repository root) plans a user's file as any other."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "config").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", root / "config" / "config.yaml")
    plans = [planned_jobs("--configfile", TINY, workdir=where) for where in (root, elsewhere)]
    assert plans[0] == plans[1]
    assert plans[0]["train_clip"] == 2  # tiny-vit and tiny-rn, not the default config's models
    assert "shapes-vit" not in snakemake("-n", "--configfile", TINY, workdir=root).stdout


def test_default_config_without_configfile(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    jobs = planned_jobs(workdir=tmp_path)
    assert jobs["train_clip"] == 2 and jobs["extract_activations"] == 1


def test_paper_config_stops_listing_the_locations_to_set(tmp_path):
    """config/paper.yaml as shipped: the dry run stops at parse time naming every dataset location to set."""
    result = snakemake("-n", "--configfile", PAPER, workdir=tmp_path, check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in message, message[-2000:]
    assert "natural-image datasets that are not located yet" in message, message[-2000:]
    unset = [f"datasets.{name}.{key}" for name, keys in paper_locations(tmp_path)["datasets"].items() for key in keys]
    assert len(unset) == 6 and all(f"  - {key} (" in message for key in unset), message[-2000:]


def test_paper_config_trains_nothing(tmp_path):
    roots = write(tmp_path, paper_locations(tmp_path / "data"))  # a dry run reads none of them
    jobs = planned_jobs("--configfile", PAPER, roots, workdir=tmp_path)
    # The stores of vit-l-14 (analyses) and of vit-b-32 and vit-b-16 (sae.models); each SAE model's own sites
    # (vit-b-32 at layer 6 for causal tracing, vit-b-16 at layer 10 for MiCLIP).
    assert "train_clip" not in jobs and jobs["extract_activations"] == 3 and jobs["train_sae"] == 2
    assert jobs["train_miclip"] == 2 and jobs["evaluate_miclip"] == 3
    # The papers' five natural-image datasets: indexed, and the jobs of the sections that name them.
    assert jobs["index_images"] == 5 and jobs["segment_pascal_context"] == jobs["tsne_cifar10"] == 1
    assert jobs["zero_shot"] == 2 and jobs["probe_miclip"] == 2 and jobs["patch_components"] == 4


def test_duplicated_key_stops_the_dry_run(tmp_path):
    """Snakemake reads --configfile keeping the last of a duplicated key; the Snakefile reads it again strictly."""
    path = tmp_path / "user.yaml"
    path.write_text(TINY.read_text().replace("  k: 5\n", "  k: 5\n  k: 6\n", 1))
    result = snakemake("-n", "--configfile", path, workdir=tmp_path, check=False)
    message = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "Job stats" not in message, message[-2000:]
    assert "duplicate key 'k' at line" in message and "write each key once" in message, message[-2000:]
