"""Config mistakes fail the dry run at parse time, naming the key and the allowed values.

The schema checks each key alone; workflow/rules/common.smk checks keys against each other and
against open_clip's tables. Each case below edits tests/config/tiny.yaml (40 images in tiny-shapes:
8 per object count, 1-5 objects) and expects ``snakemake -n`` to stop before planning any job.
Also here: which config a run reads (the user's file alone, never merged with config/config.yaml)
and which models it trains (only those an analysis uses).
"""

from __future__ import annotations

import shutil

import open_clip
import pytest
import yaml
from snakemake_cli import ROOT, TINY, planned_jobs, snakemake

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)


def tiny():
    return yaml.safe_load(TINY.read_text())


def dry_run(tmp_path, config, *args, check=False):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return snakemake(*args, "-n", "--configfile", path, workdir=tmp_path, check=check)


def rejected(tmp_path, config) -> str:
    """The dry run's output; asserts that it failed at parse time, before planning a job."""
    result = dry_run(tmp_path, config)
    message = result.stdout + result.stderr
    assert result.returncode != 0, message[-2000:]
    assert "Job stats" not in message and "ValueError" in message, message[-2000:]
    return " ".join(message.split())  # the messages may be wrapped


def fake_cifar10(root, files=("batches.meta", "test_batch")):
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in files:
        (batches / name).write_bytes(b"")
    return root


# --- counts of images ------------------------------------------------------------------------------


def test_k_above_the_number_of_images(tmp_path):
    config = tiny()
    config["selectivity"]["k"] = 41
    assert "selectivity.k = 41 exceeds the 40 images of dataset 'tiny-shapes'" in rejected(tmp_path, config)


def test_k_counts_the_images_of_the_configured_object_counts(tmp_path):
    config = tiny()
    config["datasets"]["tiny-shapes"].update(min_objects=2, max_objects=3)  # 2 x 8 images
    config["selectivity"]["k"] = 17
    assert "selectivity.k = 17 exceeds the 16 images of dataset 'tiny-shapes'" in rejected(tmp_path, config)
    config["selectivity"]["k"] = 16
    config["tsne"]["perplexity"] = 5
    assert dry_run(tmp_path, config).returncode == 0


def test_k_counts_five_images_per_scene_of_a_pairs_dataset(tmp_path):
    config = tiny()
    config["analyses"]["datasets"] = ["tiny-shapes-pairs"]  # 4 scenes x (base + 4 variants)
    config["selectivity"]["k"] = 21
    assert "selectivity.k = 21 exceeds the 20 images of dataset 'tiny-shapes-pairs'" in rejected(tmp_path, config)


def test_perplexity_not_below_the_number_of_images(tmp_path):
    config = tiny()
    config["tsne"]["perplexity"] = 40
    message = rejected(tmp_path, config)
    assert "tsne.perplexity = 40 must be below the 40 images of dataset 'tiny-shapes'" in message


def test_m_values_above_n_components(tmp_path):
    config = tiny()
    config["decomposition"]["text"]["m_values"] = [1, 4, 8]
    message = rejected(tmp_path, config)
    assert "decomposition.text.m_values [8] exceed decomposition.text.n_components = 4" in message


def test_m_values_unchecked_without_decomposed_models(tmp_path):
    config = tiny()
    config["decomposition"]["models"] = []
    config["decomposition"]["text"]["m_values"] = [1, 8]
    assert dry_run(tmp_path, config).returncode == 0


@pytest.mark.parametrize("where", ["train", "dataset"])
def test_min_objects_above_max_objects(tmp_path, where):
    config = tiny()
    if where == "train":
        config["models"]["tiny-vit"]["train"].update(min_objects=3, max_objects=2)
        key = "models.tiny-vit.train"
    else:
        config["datasets"]["tiny-shapes"].update(min_objects=3, max_objects=2)
        key = "datasets.tiny-shapes"
    assert f"{key}.min_objects = 3 exceeds {key}.max_objects = 2" in rejected(tmp_path, config)


# --- models ----------------------------------------------------------------------------------------


def test_unknown_architecture_lists_the_closest(tmp_path):
    config = tiny()
    config["models"]["tiny-vit"]["architecture"] = "ViT-L-15"
    message = rejected(tmp_path, config)
    assert "models.tiny-vit.architecture = 'ViT-L-15' is not an open_clip architecture" in message
    assert "ViT-L-14" in message and "closest of" in message


def test_unknown_pretrained_tag_lists_the_architectures_tags(tmp_path):
    config = tiny()
    config["models"]["vit-b-32"] = {"architecture": "ViT-B-32", "pretrained": "openia"}
    message = rejected(tmp_path, config)
    assert "models.vit-b-32.pretrained = 'openia' is neither an open_clip pretrained tag of ViT-B-32" in message
    assert "openai" in message


def test_pretrained_tag_of_an_architecture_without_weights(tmp_path):
    config = tiny()
    config["models"]["tiny"] = {"architecture": "clipmech-vit-tiny", "pretrained": "openai"}
    message = rejected(tmp_path, config)
    assert "models.tiny.pretrained = 'openai'" in message and "clipmech-vit-tiny has no open_clip weights" in message


@pytest.mark.parametrize(
    "pretrained", ["checkpoints/model.pt", "model.safetensors", None, "OpenAI", "laion2b-s34b-b79k"]
)
def test_checkpoint_paths_null_and_normalised_tags_pass(tmp_path, pretrained):
    config = tiny()
    config["models"]["other"] = {"architecture": "ViT-B-32", "pretrained": pretrained}  # unused: not loaded
    assert dry_run(tmp_path, config).returncode == 0


@pytest.mark.parametrize(("entry", "got"), [({}, "neither"), ({"pretrained": "openai", "train": {}}, "both")])
def test_pretrained_xor_train(tmp_path, entry, got):
    config = tiny()
    config["models"]["x"] = {"architecture": "RN50", **entry}
    message = rejected(tmp_path, config)
    assert "models.x needs exactly one of `pretrained`" in message and f"got {got}" in message


def test_sha256_needs_a_local_checkpoint(tmp_path):
    config = tiny()
    config["models"]["x"] = {"architecture": "RN50", "pretrained": "openai", "sha256": "0" * 64}
    message = rejected(tmp_path, config)
    assert "models.x.sha256 checks a local checkpoint file, but models.x.pretrained is 'openai'" in message
    config["models"]["x"] = {"architecture": "RN50", "pretrained": "weights/rn50.pt", "sha256": "0" * 64}
    assert dry_run(tmp_path, config).returncode == 0


def test_every_open_clip_architecture_and_tag_passes(tmp_path):
    """The tables common.smk reads from open_clip's files (without importing it) match open_clip's lists."""
    config = tiny()
    tagged = set()
    for i, (architecture, tag) in enumerate(open_clip.list_pretrained()):
        config["models"][f"p{i}"] = {"architecture": architecture, "pretrained": tag}
        tagged.add(architecture)
    for i, architecture in enumerate(open_clip.list_models()):
        config["models"][f"a{i}"] = {"architecture": architecture, "pretrained": None}
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"clipmech-vit-tiny", "clipmech-rn-tiny"} <= set(open_clip.list_models())


# --- CIFAR-10 --------------------------------------------------------------------------------------


def test_cifar10_root_without_the_batches(tmp_path):
    config = tiny()
    config["cifar10"]["root"] = str(tmp_path / "cifar")
    message = rejected(tmp_path, config)
    assert f"cifar10.root = '{tmp_path / 'cifar'}' must hold torchvision's cifar-10-batches-py/" in message
    assert "missing in" in message and "test_batch" in message


def test_cifar10_train_split_needs_the_training_batches(tmp_path):
    config = tiny()
    config["cifar10"].update(root=str(fake_cifar10(tmp_path / "cifar")), split="train")
    assert "missing in" in rejected(tmp_path, config) and "data_batch_1" in rejected(tmp_path, config)


def test_cifar10_perplexity_below_the_subset(tmp_path):
    config = tiny()
    config["cifar10"].update(root=str(fake_cifar10(tmp_path / "cifar")), n_images=5)
    message = rejected(tmp_path, config)
    assert "tsne.perplexity = 5 must be below the 5 CIFAR-10 images of cifar10.n_images" in message


def test_cifar10_with_its_layout_plans_the_map(tmp_path):
    config = tiny()
    config["cifar10"]["root"] = str(fake_cifar10(tmp_path / "cifar"))
    assert planned_jobs("--configfile", write(tmp_path, config), workdir=tmp_path)["tsne_cifar10"] == 1


# --- which config, which trainings -----------------------------------------------------------------


def write(tmp_path, config):
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


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


def test_only_models_an_analysis_uses_are_trained(tmp_path):
    config = tiny()
    config["models"]["unused"] = {"architecture": "clipmech-vit-tiny", "train": {"steps": 1}}
    out = snakemake("-n", "--configfile", write(tmp_path, config), workdir=tmp_path).stdout
    assert "results/models/unused" not in out
    assert planned_jobs("--configfile", write(tmp_path, config), workdir=tmp_path)["train_clip"] == 2


def test_paper_config_trains_nothing(tmp_path):
    jobs = planned_jobs("--configfile", ROOT / "config" / "paper.yaml", workdir=tmp_path)
    # The stores of vit-l-14 (analyses) and of vit-b-32 and vit-b-16 (sae.models); each SAE model's own sites
    # (vit-b-32 at layer 6 for causal tracing, vit-b-16 at layer 10 for MiCLIP).
    assert "train_clip" not in jobs and jobs["extract_activations"] == 3 and jobs["train_sae"] == 2
    assert jobs["train_miclip"] == 2 and jobs["evaluate_miclip"] == 3


# --- SAE sites --------------------------------------------------------------------------------------


def test_sae_site_must_be_in_the_store(tmp_path):
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.0.hook_resid_post"]
    message = rejected(tmp_path, config)
    assert "sae.sites ['visual.blocks.0.hook_resid_post'] are not stored by extraction.sites" in message


def test_sae_site_stored_by_a_pattern_of_its_layer(tmp_path):
    config = tiny()
    config["extraction"]["sites"] = ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"]
    config["sae"]["sites"] = ["visual.blocks.1.hook_resid_pre", "visual.blocks.0.hook_resid_pre"]
    assert planned_jobs("--configfile", write(tmp_path, config), workdir=tmp_path)["train_sae"] == 2
    config["extraction"]["layers"] = [0]
    assert "are not stored by extraction.sites" in rejected(tmp_path, config)


def test_sae_site_names_and_models_are_checked(tmp_path):
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.-1.hook_resid_pre"]
    result = dry_run(tmp_path, config)
    assert (
        result.returncode != 0 and "'visual.blocks.-1.hook_resid_pre' does not match" in result.stdout + result.stderr
    )
    config = tiny()
    config["sae"]["models"] = ["absent"]
    assert "sae.models names unknown models ['absent']" in rejected(tmp_path, config)


def test_sae_sites_per_model(tmp_path):
    config = tiny()
    config["extraction"]["sites"] = ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"]
    config["models"]["second-vit"] = config["models"]["tiny-vit"]
    config["sae"]["models"] = ["tiny-vit", "second-vit"]
    config["sae"]["sites"] = {
        "tiny-vit": ["visual.blocks.1.hook_resid_pre"],
        "second-vit": ["visual.blocks.0.hook_resid_pre"],
    }
    plan = snakemake("-n", "--configfile", write(tmp_path, config), workdir=tmp_path).stdout
    assert "results/sae/tiny-vit/visual.blocks.1.hook_resid_pre/checkpoint.pt" in plan
    assert "results/sae/second-vit/visual.blocks.0.hook_resid_pre/checkpoint.pt" in plan
    assert "results/sae/tiny-vit/visual.blocks.0." not in plan and "results/sae/second-vit/visual.blocks.1." not in plan
    config["sae"]["sites"] = {"absent": ["visual.blocks.0.hook_resid_pre"]}
    assert "sae.sites (a mapping of sae.models) names unknown models ['absent']" in rejected(tmp_path, config)
    config["sae"]["sites"] = {"tiny-vit": ["visual.blocks.1.hook_resid_pre"]}
    assert "has no entry for ['second-vit'] of sae.models" in rejected(tmp_path, config)
    config["sae"]["sites"] = {
        "tiny-vit": ["visual.blocks.1.hook_resid_pre"],
        "second-vit": ["visual.blocks.0.hook_resid_post"],
    }
    assert "sae.sites ['visual.blocks.0.hook_resid_post'] are not stored by extraction.sites" in rejected(
        tmp_path, config
    )
