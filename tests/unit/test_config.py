"""clipmech.config on config mappings, without Snakemake: every cross-key check, the resolved defaults, the plan.

Each case edits tests/config/tiny.yaml (40 images in tiny-shapes: 8 per object count, 1-5 objects) and
expects :func:`load_config` to raise the ValueError that names the key and the allowed values; the
dry runs in tests/workflow/test_config_checks.py show that the Snakefile stops on them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import open_clip
import pytest
import yaml
from snakemake_cli import PAPER, ROOT, TINY, located, paper_locations
from toys import paper_copies

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech import config as cfg
from clipmech import resources
from clipmech.config import load_config, read_config
from clipmech.data.natural import write_natural_dataset
from clipmech.hooks.names import block_site
from clipmech.models import catalogue

SHIPPED = [ROOT / "config" / "config.yaml", TINY, PAPER]


def tiny():
    return yaml.safe_load(TINY.read_text())


def shipped(path):
    """A shipped config's mapping; config/paper.yaml's with its dataset locations set (paper_locations)."""
    raw = yaml.safe_load(path.read_text())
    return located(raw, paper_locations(Path("/data"))) if path == PAPER else raw


def rejected(config) -> str:
    with pytest.raises(ValueError) as error:
        load_config(config)
    return str(error.value)


# --- schema ------------------------------------------------------------------------------------------


def _schema_sections():
    """(dataclass, schema properties) of every section with a schema, nested sections included."""
    schema = yaml.safe_load(cfg.SCHEMA.read_text())
    top = schema["properties"]
    kinds = top["datasets"]["additionalProperties"]
    pending = [(section, top[key]["properties"]) for key, section in cfg.SECTIONS.items()]
    by_kind = {branch["if"]["properties"]["kind"]["const"]: branch["then"]["properties"] for branch in kinds["allOf"]}
    assert sorted(by_kind) == sorted(cfg.DATASET_KINDS)
    pending += [(cfg.DATASET_KINDS[kind], properties) for kind, properties in by_kind.items()]
    pending += [
        (cfg.Train, top["models"]["additionalProperties"]["properties"]["train"]["properties"]),
        (cfg.UnitSet, top["miclip"]["properties"]["units"]["additionalProperties"]["items"]["properties"]),
    ]
    while pending:
        section, properties = pending.pop()
        yield section, properties
        for f in dataclasses.fields(section):
            if isinstance(f.default_factory, type) and issubclass(f.default_factory, cfg.Section):
                pending.append((f.default_factory, properties[f.name]["properties"]))


@pytest.mark.parametrize(("section", "properties"), list(_schema_sections()), ids=lambda x: getattr(x, "__name__", ""))
def test_dataclass_defaults_are_the_schema_defaults(section, properties):
    fields = {f.name: f for f in dataclasses.fields(section)}
    assert set(fields) == set(properties)
    for name, f in fields.items():
        if isinstance(f.default_factory, type) and issubclass(f.default_factory, cfg.Section):
            assert properties[name]["default"] == {}, name  # filled from its own defaults, checked on its own
            continue
        if f.default_factory is not dataclasses.MISSING:
            default = cfg._plain(f.default_factory())
        else:
            default = cfg._plain(f.default)
        if "default" in properties[name]:
            assert default == properties[name]["default"], name
        elif "const" in properties[name]:
            assert default == properties[name]["const"], name
        else:
            assert f.default is dataclasses.MISSING, f"{section.__name__}.{name} has a default the schema lacks"


def test_schema_errors_name_the_key():
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.-1.hook_resid_pre"]
    message = rejected(config)
    assert "sae.sites.0" in message and "'visual.blocks.-1.hook_resid_pre' does not match" in message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_sections_give_back_the_configs_values(path):
    """params() of each section is the validated, key-sorted mapping the jobs got from the config dict."""
    raw = shipped(path)
    validated = dict(raw)
    cfg._validator(cfg._schema(cfg.SCHEMA)).validate(validated)
    validated = cfg._canonical(validated)
    loaded = load_config(raw)
    for key in ("extraction", "selectivity", "superposition", "binding", "gradcam", "tsne"):
        assert getattr(loaded, key).params() == validated[key]
    assert loaded.decomposition.text.params() == validated["decomposition"]["text"]
    concepts = {key: value for key, value in validated["patching"]["concepts"].items() if key != "datasets"}
    assert loaded.patching.concepts.params("datasets") == concepts  # datasets: resolved (test_concept_datasets)
    for name, entry in validated["datasets"].items():
        assert loaded.datasets[name].params() == entry
    for name, entry in validated["models"].items():
        if "train" in entry:
            assert loaded.models[name].train.params() == entry["train"]
    assert list(loaded.extraction.params()) == sorted(loaded.extraction.params())


def test_config_is_frozen():
    loaded = load_config(tiny())
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.selectivity.k = 3
    assert isinstance(loaded.extraction.sites, tuple)
    with pytest.raises(TypeError):
        loaded.datasets["other"] = loaded.datasets["tiny-shapes"]


# --- Algorithm 1's k -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_k_defaults_to_selectivity_k(path):
    loaded = load_config(shipped(path))
    k = loaded.selectivity.k
    assert loaded.miclip.k_top == loaded.sae.evaluate.entropy_k == loaded.atlas.k == k


def test_k_owners_keep_their_own_values():
    config = tiny()
    config["miclip"]["k_top"] = 3
    config["sae"]["evaluate"]["entropy_k"] = 4
    config["atlas"] = {**config["atlas"], "k": 2}
    loaded = load_config(config)
    assert (loaded.selectivity.k, loaded.miclip.k_top, loaded.sae.evaluate.entropy_k, loaded.atlas.k) == (5, 3, 4, 2)


# --- counts of images ------------------------------------------------------------------------------


def test_k_above_the_number_of_images():
    config = tiny()
    config["selectivity"]["k"] = 41
    assert "selectivity.k = 41 exceeds the 40 images of dataset 'tiny-shapes'" in rejected(config)


def test_k_counts_the_images_of_the_configured_object_counts():
    config = tiny()
    config["datasets"]["tiny-shapes"].update(min_objects=2, max_objects=3)  # 2 x 8 images
    config["selectivity"]["k"] = 17
    assert "selectivity.k = 17 exceeds the 16 images of dataset 'tiny-shapes'" in rejected(config)
    config["selectivity"]["k"] = 16
    config["tsne"]["perplexity"] = 5
    config["miclip"]["k_top"] = 8  # of the 8 held-out images (its default, selectivity.k, is refused)
    load_config(config)


def test_k_counts_five_images_per_scene_of_a_pairs_dataset():
    config = tiny()
    config["analyses"]["datasets"] = ["tiny-shapes-pairs"]  # 4 scenes x (base + 4 variants)
    config["selectivity"]["k"] = 21
    assert "selectivity.k = 21 exceeds the 20 images of dataset 'tiny-shapes-pairs'" in rejected(config)


def test_k_counts_the_images_of_every_split_of_a_shift_dataset():
    config = tiny()
    config["analyses"]["datasets"] = ["tiny-shapes-shift"]  # 2 splits x 4 images
    config["tsne"]["perplexity"] = 2
    config["selectivity"]["k"] = 9
    assert "selectivity.k = 9 exceeds the 8 images of dataset 'tiny-shapes-shift'" in rejected(config)


def test_perplexity_not_below_the_number_of_images():
    config = tiny()
    config["tsne"]["perplexity"] = 40
    assert "tsne.perplexity = 40 must be below the 40 images of dataset 'tiny-shapes'" in rejected(config)


def test_m_values_above_n_components():
    config = tiny()
    config["decomposition"]["text"]["m_values"] = [1, 4, 8]
    assert "decomposition.text.m_values [8] exceed decomposition.text.n_components = 4" in rejected(config)


def test_m_values_unchecked_without_decomposed_models():
    config = tiny()
    config["decomposition"]["models"] = []
    config["decomposition"]["text"]["m_values"] = [1, 8]
    load_config(config)


@pytest.mark.parametrize("where", ["train", "dataset", "shift"])
def test_min_objects_above_max_objects(where):
    config = tiny()
    if where == "train":
        config["models"]["tiny-vit"]["train"].update(min_objects=3, max_objects=2)
        key = "models.tiny-vit.train"
    elif where == "dataset":
        config["datasets"]["tiny-shapes"].update(min_objects=3, max_objects=2)
        key = "datasets.tiny-shapes"
    else:
        config["datasets"]["tiny-shapes-shift"].update(min_objects=3, max_objects=2)
        key = "datasets.tiny-shapes-shift"
    assert f"{key}.min_objects = 3 exceeds {key}.max_objects = 2" in rejected(config)


# --- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("analyses", "models", ["absent"], "analyses.models names unknown models ['absent']; configured models are:"),
        ("analyses", "datasets", ["absent"], "analyses.datasets names unknown datasets ['absent']"),
        ("decomposition", "models", ["absent"], "decomposition.models names unknown models ['absent']"),
        ("patching", "models", ["absent"], "patching.models names unknown models ['absent']"),
        (
            "patching",
            "datasets",
            ["tiny-shapes"],
            "patching.datasets names unknown pairs or captions datasets ['tiny-shapes']; configured pairs or "
            "captions datasets are: tiny-shapes-pairs",
        ),
        ("sae", "models", ["absent"], "sae.models names unknown models ['absent']"),
    ],
)
def test_unknown_names(section, key, value, expected):
    config = tiny()
    config[section][key] = value
    assert expected in rejected(config)


def test_null_model_lists_are_resolved():
    config = tiny()
    del config["patching"]["models"]
    config["atlas"]["models"] = None
    loaded = load_config(config)
    assert loaded.patching.models == loaded.sae.models == ("tiny-vit",)
    assert loaded.patching.datasets == ("tiny-shapes-pairs",)
    assert loaded.atlas.models == loaded.plan.atlas_models == ("tiny-vit", "tiny-rn")
    assert loaded.atlas.dataset == loaded.plan.atlas_dataset == loaded.miclip.dataset == "tiny-shapes"


# --- models ----------------------------------------------------------------------------------------


def test_unknown_architecture_lists_the_closest():
    config = tiny()
    config["models"]["tiny-vit"]["architecture"] = "ViT-L-15"
    message = rejected(config)
    assert "models.tiny-vit.architecture = 'ViT-L-15' is not an open_clip architecture" in message
    assert "ViT-L-14" in message and "closest of" in message


def test_unknown_pretrained_tag_lists_the_architectures_tags():
    config = tiny()
    config["models"]["vit-b-32"] = {"architecture": "ViT-B-32", "pretrained": "openia"}
    message = rejected(config)
    assert "models.vit-b-32.pretrained = 'openia' is neither an open_clip pretrained tag of ViT-B-32" in message
    assert "openai" in message


def test_pretrained_tag_of_an_architecture_without_weights():
    config = tiny()
    config["models"]["tiny"] = {"architecture": "clipmech-vit-tiny", "pretrained": "openai"}
    message = rejected(config)
    assert "models.tiny.pretrained = 'openai'" in message and "clipmech-vit-tiny has no open_clip weights" in message


@pytest.mark.parametrize(
    "pretrained", ["checkpoints/model.pt", "model.safetensors", None, "OpenAI", "laion2b-s34b-b79k"]
)
def test_checkpoint_paths_null_and_normalised_tags_pass(pretrained):
    config = tiny()
    config["models"]["other"] = {"architecture": "ViT-B-32", "pretrained": pretrained}  # unused: not loaded
    load_config(config)


@pytest.mark.parametrize(("entry", "got"), [({}, "neither"), ({"pretrained": "openai", "train": {}}, "both")])
def test_pretrained_xor_train(entry, got):
    config = tiny()
    config["models"]["x"] = {"architecture": "RN50", **entry}
    message = rejected(config)
    assert "models.x needs exactly one of `pretrained`" in message and f"got {got}" in message


def test_sha256_needs_a_local_checkpoint():
    config = tiny()
    config["models"]["x"] = {"architecture": "RN50", "pretrained": "openai", "sha256": "0" * 64}
    message = rejected(config)
    assert "models.x.sha256 checks a local checkpoint file, but models.x.pretrained is 'openai'" in message
    config["models"]["x"] = {"architecture": "RN50", "pretrained": "weights/rn50.pt", "sha256": "0" * 64}
    assert load_config(config).model_entry("x") == {
        "architecture": "RN50",
        "pretrained": "weights/rn50.pt",
        "sha256": "0" * 64,
    }


def test_hub_architectures_are_left_to_loading():
    config = tiny()
    config["models"]["hub"] = {"architecture": "hf-hub:org/model", "pretrained": "anything"}
    load_config(config)


def test_every_open_clip_architecture_and_tag_passes():
    """The tables clipmech.models.catalogue reads from open_clip's files (without importing it) match open_clip's lists."""
    config = tiny()
    for i, (architecture, tag) in enumerate(open_clip.list_pretrained()):
        config["models"][f"p{i}"] = {"architecture": architecture, "pretrained": tag}
    for i, architecture in enumerate(open_clip.list_models()):
        config["models"][f"a{i}"] = {"architecture": architecture, "pretrained": None}
    load_config(config)
    assert {"clipmech-vit-tiny", "clipmech-rn-tiny"} <= set(open_clip.list_models())


def test_model_entry_of_a_trained_model_is_its_checkpoint():
    loaded = load_config(tiny())
    assert loaded.model_entry("tiny-vit") == {
        "architecture": "clipmech-vit-tiny",
        "pretrained": "results/models/tiny-vit/checkpoint.pt",
    }


def test_size_overrides_reach_the_model_entry_and_every_estimate():
    config = tiny()
    config["models"]["big"] = {"architecture": "ViT-L-14", "pretrained": None, "image_size": 28, "context_length": 16}
    sizes = {"image_size": 28, "context_length": 16}
    assert load_config(config).model_entry("big") == {"architecture": "ViT-L-14", "pretrained": None, **sizes}
    assert catalogue.tokens_per_input("ViT-L-14", "visual") == (1, 256)
    assert catalogue.tokens_per_input("ViT-L-14", "visual", **sizes) == (1, 4)
    assert catalogue.tokens_per_input("ViT-L-14", "text", **sizes) == (0, 16)
    assert catalogue.site_positions("RN50x16", "visual", 3, image_size=64) == 4  # 64 / 32 on a side
    shape = resources.model_shape("ViT-L-14", **sizes)
    assert (shape.visual.n_tokens, shape.visual.image_size, shape.text.n_tokens) == (5, 28, 16)
    assert shape.params == resources.model_shape("ViT-L-14").params - (257 - 5) * 1024 - (77 - 16) * 768


def test_size_overrides_of_a_trained_model_are_refused():
    config = tiny()
    config["models"]["tiny-vit"]["context_length"] = 8
    with pytest.raises(ValueError, match=r"models.tiny-vit.context_length resizes a loaded architecture"):
        load_config(config)


# --- CIFAR-10 and PASCAL Context: datasets named by the rule that reads them ---------------------------------


def local_copies(config):
    """tiny.yaml with a CIFAR-10 and a PASCAL Context dataset, named for the t-SNE map and the segmentation."""
    config["datasets"]["cifar"] = {"kind": "cifar10", "root": "/data/cifar10", "n_images": 100}
    config["datasets"]["context"] = {"kind": "pascal_context", "root": "/data/VOC2010"}
    config["tsne"]["cifar10"] = "cifar"
    config.setdefault("decomposition", {}).setdefault("pascal_context", {})["dataset"] = "context"
    config["zeroshot"] = {"datasets": []}
    return config


def test_the_moved_keys_say_where_they_went():
    config = tiny()
    config["cifar10"] = {"root": "/data/cifar10", "split": "test", "n_images": 2000}
    message = rejected(config)
    assert (
        message.startswith("the cifar10 section moved: declare the local copy as a dataset")
        and "kind: cifar10" in message
    )
    assert "name it in tsne.cifar10" in message
    config = tiny()
    config["decomposition"]["pascal_context"] = {"root": "/data/VOC2010", "split": "val", "scale": [2048, 384]}
    message = rejected(config)
    assert (
        message.startswith("the key(s) root, split of decomposition.pascal_context moved")
        and "kind: pascal_context" in message
    )
    assert "name it in decomposition.pascal_context.dataset" in message


def test_named_datasets_fill_their_defaults_and_are_read_by_their_rule():
    loaded = load_config(local_copies(tiny()))
    assert loaded.datasets["cifar"] == cfg.Cifar10(root="/data/cifar10", n_images=100)
    assert loaded.datasets["cifar"].params() == {
        "kind": "cifar10", "n_images": 100, "root": "/data/cifar10", "seed": 0, "split": "test",
    }  # fmt: skip
    assert loaded.datasets["context"] == cfg.PascalContextImages(root="/data/VOC2010")
    assert (loaded.datasets["context"].split, loaded.datasets["context"].skip_unreadable) == ("val", False)
    assert loaded.natural_datasets() == ["cifar", "context"] and loaded.indexed_only() == []
    skipped = loaded.skipped()
    assert not any(line.startswith(("tsne.cifar10", "decomposition.pascal_context")) for line in skipped)
    assert loaded.named_dataset("tsne.cifar10")(None) == "results/datasets/cifar/data"
    assert loaded.named_dataset("decomposition.pascal_context.dataset")(None) == "results/datasets/context/data"
    # The rules' params leave the dataset names out: the folder is their input.
    assert loaded.tsne.params("cifar10") == {"perplexity": 5}
    assert "dataset" not in loaded.decomposition.pascal_context.params("dataset")
    unset = load_config(tiny())
    assert any(line.startswith("tsne.cifar10 is not set: skipping the CIFAR-10 t-SNE maps") for line in unset.skipped())
    assert any(line.startswith("decomposition.pascal_context.dataset is not set") for line in unset.skipped())
    with pytest.raises(ValueError, match="tsne.cifar10 is null: name a dataset of kind cifar10"):
        unset.named_dataset("tsne.cifar10")(None)
    # Only indexed when its rule runs: no decomposed model reads the PASCAL Context dataset.
    config = local_copies(tiny())
    config["decomposition"]["models"] = []
    config["atlas"] = {"models": ["tiny-vit"]}
    config["miclip"]["units"] = {"tiny-vit": config["miclip"]["units"]["tiny-vit"]}
    assert load_config(config).indexed_only() == ["context"]


def test_named_datasets_are_of_their_kind():
    config = local_copies(tiny())
    config["tsne"]["cifar10"] = "nope"
    assert "tsne.cifar10 names unknown datasets ['nope']; configured datasets are: cifar, context" in rejected(config)
    config["tsne"]["cifar10"] = "context"
    assert (
        "tsne.cifar10 names 'context', a dataset of kind pascal_context, but it needs a dataset of kind cifar10; "
        "configured cifar10 datasets are: cifar" in rejected(config)
    )
    config = local_copies(tiny())
    config["decomposition"]["pascal_context"]["dataset"] = "tiny-shapes"
    assert (
        "decomposition.pascal_context.dataset names 'tiny-shapes', a dataset of kind shapes, but it needs a dataset "
        "of kind pascal_context; configured pascal_context datasets are: context" in rejected(config)
    )


def test_cifar10_perplexity_below_the_subset():
    config = local_copies(tiny())
    config["datasets"]["cifar"]["n_images"] = 5
    assert "tsne.perplexity = 5 must be below the 5 CIFAR-10 images of datasets.cifar.n_images" in rejected(config)
    config["datasets"]["cifar"]["n_images"] = None  # the whole split (10,000 or 50,000 images)
    load_config(config)


def test_cifar10_and_pascal_context_are_natural_datasets_elsewhere():
    """In analyses.datasets they get the store and Algorithm 1; CIFAR-10 has one class per image (zero-shot with
    templates, the SAEs' and MiCLIP's classifier), PASCAL Context several categories (no classifier)."""
    config = local_copies(tiny())
    config["analyses"]["datasets"] = ["tiny-shapes", "cifar", "context"]
    plan = load_config(config).plan
    assert plan.analyses == (("tiny-vit", "tiny-shapes"), ("tiny-vit", "cifar"), ("tiny-vit", "context"))
    assert plan.shapes_analyses == (("tiny-vit", "tiny-shapes"),)
    config["zeroshot"] = {}
    message = rejected(config)
    assert (
        "zeroshot.templates is null, but zeroshot.datasets (null: every located dataset with classes) ['cifar']"
        in message
    )
    config["zeroshot"] = {"templates": ["a photo of a {}."]}
    assert load_config(config).plan.zeroshots == (("tiny-vit", "cifar"),)
    config["zeroshot"] = {"datasets": ["context"], "templates": ["a {}"]}
    message = rejected(config)
    assert "'context', which has no classes to classify: a pascal_context dataset has no single class" in message
    # The SAEs on CIFAR-10 classify it with its classifier (templates needed); on PASCAL Context, none.
    config = local_copies(tiny())
    config["analyses"]["datasets"] = ["cifar", "tiny-shapes"]
    config["miclip"]["dataset"] = "tiny-shapes"
    message = rejected(config)
    assert "a natural-image dataset of kind cifar10" in message and "zeroshot.templates is null" in message
    config["zeroshot"]["templates"] = ["a photo of a {}."]
    inputs = load_config(config).sae_evaluation_inputs("tiny-vit")
    assert inputs["classifier"] == "results/zeroshot/tiny-vit/cifar/classifier.npz"
    config["analyses"]["datasets"] = ["context", "tiny-shapes"]
    assert load_config(config).sae_evaluation_inputs("tiny-vit") == {"dataset_dir": "results/datasets/context/data"}
    # MiCLIP on CIFAR-10: Delta Acc over its classes needs templates.
    config = local_copies(tiny())
    config["miclip"]["dataset"] = "cifar"
    config["miclip"]["units"] = {"tiny-vit": [{"site": "visual.blocks.1.hook_mlp_out", "kind": "neurons"}]}
    assert "miclip.dataset 'cifar' is of kind cifar10, and MiCLIP's Delta Acc" in rejected(config)
    config["miclip"]["dataset"] = "context"
    assert load_config(config).miclip_classifier() == []


# --- which models are used and trained -------------------------------------------------------------------


def test_only_models_an_analysis_uses_are_trained():
    config = tiny()
    config["models"]["unused"] = {"architecture": "clipmech-vit-tiny", "train": {"steps": 1}}
    plan = load_config(config).plan
    assert "unused" not in plan.used and plan.trained == ("tiny-rn", "tiny-vit")


def test_paper_config_trains_nothing():
    plan = load_config(shipped(PAPER)).plan
    # The stores of vit-l-14 (analyses) and of vit-b-32 and vit-b-16 (sae.models); each SAE model's own sites
    # (vit-b-32 at layer 6 for causal tracing, vit-b-16 at layer 10 for MiCLIP).
    assert plan.trained == ()
    assert plan.saes == (
        ("vit-b-32", "visual.blocks.6.hook_resid_pre"),
        ("vit-b-16", "visual.blocks.10.hook_resid_pre"),
    )
    assert len(plan.miclip_sites) == 2 and len(plan.miclip_units) == 3


# --- SAE sites --------------------------------------------------------------------------------------


def test_sae_site_must_be_in_the_store():
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.0.hook_resid_post"]
    message = rejected(config)
    assert "sae.sites ['visual.blocks.0.hook_resid_post'] of 'tiny-vit' are not stored by extraction.sites" in message


def test_extraction_sites_per_model():
    config = tiny()
    sites = config["extraction"]["sites"]
    config["extraction"]["sites"] = {"tiny-vit": sites}
    loaded = load_config(config)
    assert loaded.extraction.sites_of("tiny-vit") == tuple(sites)
    assert loaded.extraction.sites_of("tiny-rn") == ("visual.blocks.*.hook_mlp_out",)  # left out: MLP outputs only
    assert loaded.extraction.params_of("tiny-vit")["sites"] == sites
    # The SAE site must be in its own model's list.
    config["extraction"]["sites"] = {"tiny-vit": ["visual.blocks.*.hook_mlp_out"], "tiny-rn": sites}
    assert "of 'tiny-vit' are not stored by extraction.sites.tiny-vit" in rejected(config)
    config["extraction"]["sites"] = {"tiny-vt": sites}
    assert "extraction.sites (a mapping of models)" in rejected(config)
    config["extraction"]["sites"] = {"tiny-vit": ["visual.blocks.1.hook_resid_pre"]}
    assert "invalid config at extraction.sites.tiny-vit" in rejected(config)


def test_sae_mlp_out_site_needs_the_tokens():
    config = tiny()
    config["sae"]["sites"] = ["visual.blocks.1.hook_mlp_out"]
    config["miclip"]["units"] = {}  # its sae unit set reads the SAE at hook_resid_pre
    load_config(config)
    config["extraction"]["save_tokens"] = False
    assert "are not stored by extraction.sites" in rejected(config)


def test_sae_site_stored_by_a_pattern_of_its_layer():
    config = tiny()
    config["extraction"]["sites"] = ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"]
    config["sae"]["sites"] = ["visual.blocks.1.hook_resid_pre", "visual.blocks.0.hook_resid_pre"]
    assert len(load_config(config).plan.saes) == 2
    config["extraction"]["layers"] = [0]
    assert "are not stored by extraction.sites" in rejected(config)


def test_sae_sites_per_model():
    config = tiny()
    config["extraction"]["sites"] = ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"]
    config["models"]["second-vit"] = config["models"]["tiny-vit"]
    config["sae"]["models"] = ["tiny-vit", "second-vit"]
    config["sae"]["sites"] = {
        "tiny-vit": ["visual.blocks.1.hook_resid_pre"],
        "second-vit": ["visual.blocks.0.hook_resid_pre"],
    }
    plan = load_config(config).plan
    assert set(plan.saes) == {
        ("tiny-vit", "visual.blocks.1.hook_resid_pre"),
        ("second-vit", "visual.blocks.0.hook_resid_pre"),
    }
    config["sae"]["sites"] = {"absent": ["visual.blocks.0.hook_resid_pre"]}
    assert "sae.sites (a mapping of sae.models) names unknown models ['absent']" in rejected(config)
    config["sae"]["sites"] = {"tiny-vit": ["visual.blocks.1.hook_resid_pre"]}
    assert "has no entry for ['second-vit'] of sae.models" in rejected(config)
    config["sae"]["sites"] = {
        "tiny-vit": ["visual.blocks.1.hook_resid_pre"],
        "second-vit": ["visual.blocks.0.hook_resid_post"],
    }
    assert "sae.sites ['visual.blocks.0.hook_resid_post'] of 'second-vit' are not stored by" in rejected(config)


def test_block_site_parses_the_layer_and_rejects_other_forms():
    assert block_site("text.blocks.-1.mlp.hook_post") == ("text", -1, "mlp.hook_post")
    with pytest.raises(ValueError, match="not of the form"):
        block_site("visual.attnpool.hook_out")


# --- MiCLIP -----------------------------------------------------------------------------------------


def test_miclip_names_are_checked():
    config = tiny()
    config["miclip"]["units"]["absent"] = [{"site": "visual.blocks.0.hook_mlp_out", "kind": "neurons"}]
    assert "miclip.units names unknown models ['absent']" in rejected(config)
    config = tiny()
    config["miclip"]["reference"] = "absent"
    assert "miclip.reference names unknown models ['absent']" in rejected(config)
    config = tiny()
    config["miclip"]["dataset"] = "tiny-shapes-pairs"
    assert "miclip.dataset names unknown shapes or natural-image datasets ['tiny-shapes-pairs']" in rejected(config)


def test_miclip_default_dataset_must_be_shapes():
    config = tiny()
    config["analyses"]["datasets"] = ["tiny-shapes-pairs"]
    config["selectivity"]["k"] = config["tsne"]["perplexity"] = 5
    message = rejected(config)
    assert "analyses.datasets[0] = 'tiny-shapes-pairs' is not a Shapes or natural-image dataset" in message
    config["miclip"]["dataset"] = "tiny-shapes"
    assert load_config(config).miclip.dataset == "tiny-shapes"


def test_miclip_needs_every_loss():
    config = tiny()
    config["miclip"]["losses"] = ["both", "input"]
    assert "miclip.losses = ['both', 'input']: the evaluation compares all three losses" in rejected(config)


def test_miclip_site_of_the_architecture():
    config = tiny()
    config["miclip"]["units"]["tiny-rn"] = [{"site": "visual.blocks.3.hook_mlp_out", "kind": "neurons"}]
    message = rejected(config)
    assert "miclip.units.tiny-rn: unknown site 'visual.blocks.3.hook_mlp_out'; valid sites are:" in message
    assert "visual.blocks.3.hook_resid_post" in message
    config["miclip"]["units"]["tiny-rn"] = [{"site": "visual.blocks.4.hook_resid_post", "kind": "neurons"}]
    assert "unknown site 'visual.blocks.4.hook_resid_post'" in rejected(config)


def test_miclip_sae_units_need_the_sae():
    config = tiny()
    config["miclip"]["units"]["tiny-vit"] = [{"site": "visual.blocks.0.hook_resid_pre", "kind": "sae"}]
    assert "miclip.units.tiny-vit: kind sae at visual.blocks.0.hook_resid_pre needs the SAE of rule train_sae" in (
        rejected(config)
    )


def test_miclip_sae_units_need_patch_tokens():
    config = tiny()
    assert any(unit["kind"] == "sae" for units in config["miclip"]["units"].values() for unit in units)
    config["sae"]["tokens"] = "class"
    assert "sae.tokens = class trains the SAE on the class token only; set sae.tokens to patch or all" in (
        rejected(config)
    )


def test_miclip_off_checks_nothing():
    config = tiny()
    config["miclip"] = {"units": {}, "reference": "absent"}
    plan = load_config(config).plan
    assert plan.miclip_units == () and "absent" not in plan.used


def test_miclip_plan():
    plan = load_config(tiny()).plan
    assert plan.miclip_units == (
        ("tiny-rn", "visual.blocks.3.hook_resid_post", "neurons"),
        ("tiny-vit", "visual.blocks.1.hook_mlp_out", "neurons"),
        ("tiny-vit", "visual.blocks.1.hook_resid_pre", "sae"),
    )
    assert plan.miclip_sites == tuple(sorted({(model, site) for model, site, _ in plan.miclip_units}))


# --- shift datasets and the atlas ----------------------------------------------------------------------


def test_shift_base_must_be_a_shapes_dataset():
    config = tiny()
    config["datasets"]["tiny-shapes-shift"]["base"] = "tiny-shapes-pairs"
    assert "datasets.tiny-shapes-shift.base names unknown shapes datasets ['tiny-shapes-pairs']" in rejected(config)


def test_one_shift_dataset_per_base():
    config = tiny()
    config["datasets"]["second-shift"] = dict(config["datasets"]["tiny-shapes-shift"])
    message = rejected(config)
    assert "datasets second-shift and tiny-shapes-shift are both shift splits of tiny-shapes" in message
    assert dict(load_config(tiny()).plan.shift_of) == {"tiny-shapes": "tiny-shapes-shift"}


def test_atlas_models_and_dataset_are_analysed():
    config = tiny()
    config["atlas"]["models"] = ["tiny-vit", "absent"]
    assert "atlas.models names unknown analysed or decomposed models ['absent']" in rejected(config)
    config = tiny()
    config["atlas"]["dataset"] = "tiny-shapes-pairs"
    assert "atlas.dataset names unknown analysed datasets ['tiny-shapes-pairs']" in rejected(config)


# --- natural-image datasets and zero-shot ------------------------------------------------------------


def natural(config):
    config["datasets"]["imnet"] = {"kind": "imagenet", "root": "/data/imagenet"}
    config["datasets"]["photos"] = {"kind": "imagefolder", "root": "/data/photos"}
    config["datasets"]["pairs-text"] = {"kind": "captions", "path": "/data/cc.tsv"}
    return config


def test_natural_datasets_fill_their_defaults():
    loaded = load_config(natural(tiny()) | {"zeroshot": {"templates": ["a photo of a {}."]}})
    assert loaded.datasets["imnet"] == cfg.ImageNet(root="/data/imagenet")
    assert loaded.datasets["imnet"].params() == {
        "kind": "imagenet",
        "n_images": None,
        "root": "/data/imagenet",
        "seed": 0,
        "skip_unreadable": False,
        "split": "val",
    }
    assert (
        loaded.datasets["pairs-text"].image_key == "filepath" and loaded.datasets["pairs-text"].caption_key == "title"
    )
    assert loaded.plan.zeroshots == (("tiny-vit", "imnet"), ("tiny-vit", "photos"))


def test_natural_datasets_get_the_store_and_algorithm_1_only():
    config = natural(tiny())
    config["analyses"]["datasets"] = ["tiny-shapes", "photos", "imnet"]
    config["zeroshot"] = {"datasets": []}
    plan = load_config(config).plan
    assert plan.analyses == (("tiny-vit", "tiny-shapes"), ("tiny-vit", "photos"), ("tiny-vit", "imnet"))
    assert plan.shapes_analyses == (("tiny-vit", "tiny-shapes"),)
    assert {dataset for _, dataset in plan.decompositions} == {"tiny-shapes"}


def test_what_a_config_leaves_out_is_said_and_shapes_only_rules_refuse_natural_data():
    config = natural(tiny())
    config["analyses"]["datasets"] = ["tiny-shapes", "photos"]
    config["zeroshot"] = {"datasets": []}
    loaded = load_config(config)
    assert loaded.natural_datasets() == ["imnet", "photos", "pairs-text"]
    assert loaded.indexed_only() == ["imnet", "pairs-text"]
    skipped = loaded.skipped()
    assert skipped[0].startswith("photos is a natural-image dataset: its activation store and Algorithm 1 run")
    assert "dataset imnet (imagenet) is in no analysis: indexing it only" in skipped
    assert any(line.startswith("tsne.cifar10 is not set") for line in skipped)
    assert not any(line.startswith("causal tracing") for line in skipped)
    config["patching"]["datasets"] = []
    assert any(
        line.startswith("causal tracing and activation patching do not run") for line in load_config(config).skipped()
    )
    assert loaded.synthetic_data("tiny-shapes") == "results/datasets/tiny-shapes/data"
    with pytest.raises(ValueError, match="but photos is a natural-image dataset \\(kind imagefolder\\)"):
        loaded.synthetic_data("photos")


def test_the_decomposition_runs_on_a_natural_dataset_with_classes_named_in_decomposition_datasets():
    """decomposition.datasets null is the synthetic analysed datasets (as before); naming ImageNet adds it with its
    classifier as input and the model and templates it is checked against, and no Shapes-only stage."""
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    assert load_config(config).decomposition.datasets == ("tiny-shapes",)
    config["decomposition"]["datasets"] = ["tiny-shapes", "imnet"]
    loaded = load_config(config)
    assert loaded.plan.decompositions == (("tiny-rn", "tiny-shapes"), ("tiny-rn", "imnet"))
    assert loaded.plan.shapes_decompositions == (("tiny-rn", "tiny-shapes"),)
    assert "imnet" not in loaded.indexed_only()
    assert (
        "imnet (imagenet) is decomposed by tiny-rn: its ablation curves and sparse-direction accuracy score zero-shot "
        "top-1 over its classes; segmentation and shift monitoring do not run on it (they read Shapes masks and "
        "objects)"
    ) in loaded.skipped()
    assert not any("shift has base imnet" in line for line in loaded.skipped())
    classifier = "results/zeroshot/tiny-rn/imnet/classifier.npz"
    assert loaded.decomposition_inputs("tiny-rn", "imnet", text=False) == {
        "dataset_dir": "results/datasets/imnet/data",
        "classifier": classifier,
        "classifier_sha256": f"{classifier}.sha256",
        "checkpoint": ["results/models/tiny-rn/checkpoint.pt"],  # its sha256 is the classifier's weights id
    }
    assert (
        loaded.decomposition_inputs("tiny-rn", "imnet", text=True)["text_path"] == "results/text/tiny-rn/embeddings.npz"
    )
    assert set(loaded.decomposition_inputs("tiny-rn", "tiny-shapes", text=False)) == {
        "dataset_dir", "text_path", "text_path_sha256"
    }  # fmt: skip
    assert loaded.decomposition_classifier_spec({"name": "tiny-rn"}, "imnet") == {
        "model": {"name": "tiny-rn"},
        "templates": None,  # ImageNet's 80 OpenAI templates
    }
    assert loaded.decomposition_classifier_spec({"name": "tiny-rn"}, "tiny-shapes") is None
    with pytest.raises(ValueError, match="pairs-text is a captions dataset, which has none"):
        loaded.decomposition_inputs("tiny-rn", "pairs-text", text=True)
    jobs = {}
    for job in resources.plan_jobs(loaded):
        jobs.setdefault(job.rule, []).append((job.wildcards.get("model"), job.wildcards.get("dataset")))
    assert jobs["ablate_components"] == jobs["decompose_text"] == list(loaded.plan.decompositions)
    assert jobs["segment_shapes"] == [("tiny-rn", "tiny-shapes")]
    assert ("tiny-rn", "imnet") in jobs["zero_shot_classifier"] and ("tiny-rn", "imnet") in jobs["extract_attnpool"]


def test_decomposition_datasets_checks():
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["decomposition"]["datasets"] = ["imnet", "nope"]
    assert "decomposition.datasets names unknown datasets ['nope']" in rejected(config)
    config["decomposition"]["datasets"] = ["pairs-text"]
    message = rejected(config)
    assert "decomposition.datasets names 'pairs-text', a dataset of kind captions" in message
    assert (
        "kind shapes, imagenet, imagefolder, cifar10; such datasets configured: imnet, photos, tiny-shapes" in message
    )
    config["decomposition"]["datasets"] = ["tiny-shapes-pairs"]
    assert "'tiny-shapes-pairs', a dataset of kind pairs" in rejected(config)
    config["decomposition"]["datasets"] = ["photos"]
    assert "decomposition.datasets ['photos'] are scored over their classes" in rejected(config)
    assert "zeroshot.templates is null" in rejected(config)
    config["zeroshot"]["templates"] = ["a photo of a {}."]
    loaded = load_config(config)
    assert loaded.plan.decompositions == (("tiny-rn", "photos"),) and not loaded.plan.shapes_decompositions
    assert loaded.decomposition_classifier_spec({}, "photos")["templates"] == ["a photo of a {}."]


def test_natural_analyses_checks():
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["analyses"]["datasets"] = ["tiny-shapes", "pairs-text"]
    assert "captions dataset 'pairs-text', which has no concepts for Algorithm 1: set datasets.pairs-text.words" in (
        rejected(config)
    )
    config["datasets"]["pairs-text"]["words"] = ["dog", "red car"]
    assert load_config(config).datasets["pairs-text"].words == ("dog", "red car")
    config["analyses"]["datasets"] = ["tiny-shapes", "photos"]
    config["extraction"]["sites"] = [*config["extraction"]["sites"], "text.blocks.0.hook_mlp_out"]
    assert "but analyses.datasets ['photos'] have no captions" in rejected(config)


def natural_saes(first, **zeroshot):
    """tiny.yaml with the natural datasets, `first` first in analyses.datasets (the SAEs train on it) and the
    MiCLIP units on tiny-shapes (they read a Shapes dataset of their own)."""
    config = natural(tiny())
    config["zeroshot"] = {"datasets": [], **zeroshot}
    config["analyses"]["datasets"] = [first, "tiny-shapes"]
    config["miclip"]["dataset"] = "tiny-shapes"
    return config


@pytest.mark.parametrize("first", ["photos", "imnet", "pairs-text"])
def test_saes_train_and_evaluate_on_a_natural_dataset(first):
    config = natural_saes(first, templates=["a photo of a {}."])
    config["datasets"]["pairs-text"]["words"] = ["dog", "red car"]
    loaded = load_config(config)
    assert loaded.plan.sae_dataset == first and loaded.plan.saes == (("tiny-vit", "visual.blocks.1.hook_resid_pre"),)
    inputs = loaded.sae_evaluation_inputs("tiny-vit")
    assert inputs["dataset_dir"] == f"results/datasets/{first}/data"
    params = loaded.sae_natural_params()
    if first == "pairs-text":  # captions: no classes, so no classifier; its concept words
        assert set(inputs) == {"dataset_dir"}
        assert params == {"templates": None, "words": ["dog", "red car"]}
    else:  # the downstream metrics classify over its classes with rule zero_shot_classifier's classifier
        classifier = f"results/zeroshot/tiny-vit/{first}/classifier.npz"
        assert inputs == {
            "dataset_dir": f"results/datasets/{first}/data",
            "classifier": classifier,
            "classifier_sha256": f"{classifier}.sha256",
        }
        assert params == {"templates": ["a photo of a {}."], "words": None}
    assert loaded.skipped()[0].startswith(f"{first} is a natural-image dataset: its activation store and Algorithm 1")


def test_shapes_saes_read_no_classifier_and_no_natural_params():
    config = natural(tiny())
    config["zeroshot"] = {"templates": ["a photo of a {}."]}
    loaded = load_config(config)
    assert loaded.sae_evaluation_inputs("tiny-vit") == {"dataset_dir": "results/datasets/tiny-shapes/data"}
    assert loaded.sae_natural_params() == {"templates": None, "words": None}  # template edits rerun no Shapes SAE


def test_natural_sae_checks():
    # An image folder has no default templates: its SAEs' downstream metrics need them.
    message = rejected(natural_saes("photos"))
    assert "the SAEs train on analyses.datasets[0] = 'photos', a natural-image dataset of kind imagefolder" in message
    assert "zeroshot.templates is null" in message
    load_config(natural_saes("imnet"))  # ImageNet's default: OpenAI's 80 templates
    config = natural_saes("photos")
    config["sae"]["sites"] = []  # no SAE: nothing to classify
    config["miclip"]["units"] = {}
    load_config(config)
    # A captions dataset still needs its concepts; MiCLIP may probe the natural dataset too, SAE units included.
    assert "set datasets.pairs-text.words" in rejected(natural_saes("pairs-text"))
    config = natural_saes("imnet")
    config["miclip"]["dataset"] = None
    loaded = load_config(config)
    assert loaded.miclip.dataset == "imnet" and any(kind == "sae" for _, _, kind in loaded.plan.miclip_units)


def natural_miclip(dataset):
    """tiny.yaml with the natural datasets and MiCLIP's neuron unit sets on `dataset`."""  # sae: checked below
    config = natural(tiny())
    config["zeroshot"] = {"datasets": [], "templates": ["a photo of a {}."]}
    config["miclip"]["dataset"] = dataset
    config["miclip"]["units"] = {
        model: [unit for unit in units if unit["kind"] == "neurons"]
        for model, units in config["miclip"]["units"].items()
    }
    return config


@pytest.mark.parametrize("dataset", ["photos", "imnet", "pairs-text"])
def test_miclip_runs_on_a_natural_dataset(dataset):
    config = natural_miclip(dataset)
    config["datasets"]["pairs-text"]["words"] = ["dog", "red car"]
    config["miclip"]["k_top"] = 10_000  # the dataset's size is known once it is indexed: not checked here
    loaded = load_config(config)
    assert loaded.miclip.dataset == dataset and loaded.plan.miclip_units
    assert all(kind == "neurons" for _, _, kind in loaded.plan.miclip_units)
    words = ["dog", "red car"] if dataset == "pairs-text" else None
    templates = ["a photo of a {}."] if dataset != "pairs-text" else None
    assert loaded.miclip_natural_params() == {"words": words, "templates": templates}
    assert dataset not in loaded.indexed_only()  # its index is read by MiCLIP, not built for nothing
    # Delta Acc classifies a dataset with classes with the target's zero-shot classifier; captions: none.
    classifier = f"results/zeroshot/{{model}}/{dataset}/classifier.npz"
    assert loaded.miclip_classifier() == ([] if dataset == "pairs-text" else classifier)
    assert loaded.miclip_classifier(sha256=True) == ([] if dataset == "pairs-text" else f"{classifier}.sha256")


def test_shapes_miclip_reads_no_natural_params():
    loaded = load_config(natural_miclip("tiny-shapes"))
    assert loaded.miclip_natural_params() is None and loaded.miclip_classifier() == []


def test_natural_miclip_checks():
    # A captions dataset needs concepts to describe the units with.
    message = rejected(natural_miclip("pairs-text"))
    assert "miclip.dataset 'pairs-text' is a captions dataset without concepts for MiCLIP" in message
    assert "set datasets.pairs-text.words" in message
    # SAE unit sets read the held-out photographs' tokens again (methods.md Sec. 9.8): accepted.
    config = natural_miclip("photos")
    config["miclip"]["units"]["tiny-vit"].append({"site": "visual.blocks.1.hook_resid_pre", "kind": "sae"})
    assert ("tiny-vit", "visual.blocks.1.hook_resid_pre", "sae") in load_config(config).plan.miclip_units
    # An image folder's classifier needs templates (ImageNet has OpenAI's).
    config = natural_miclip("photos")
    config["zeroshot"]["templates"] = None
    assert "miclip.dataset 'photos' is of kind imagefolder, and MiCLIP's Delta Acc" in rejected(config)
    config = natural_miclip("imnet")
    config["zeroshot"]["templates"] = None
    load_config(config)
    # The holdout of a counted subset is still checked.
    config = natural_miclip("imnet")
    config["datasets"]["imnet"]["n_images"] = 8
    config["miclip"]["holdout"] = 0.01
    assert "miclip.holdout = 0.01 holds out 0 of the 8 images of dataset 'imnet'" in rejected(config)


def test_natural_sae_token_settings():
    """The token checks hold on natural data: the buffer against a chunk (the whole dataset's size is unknown
    until it is indexed, so a chunk is extraction.batch_size images), the holdout of a counted subset."""
    config = natural_saes("photos", templates=["a {}"])
    config["sae"]["tokens"] = "patch"
    load_config(config)
    config["sae"]["buffer_tokens"] = 16 * 64 - 1
    message = rejected(config)
    assert "16 images (extraction.batch_size = 16, its size is known once it is indexed) x 64 tokens" in message
    config = natural_saes("imnet")
    config["datasets"]["imnet"]["n_images"] = 8
    config["sae"]["holdout"] = 0.05
    assert "sae.holdout = 0.05 holds out 0 of the 8 images of dataset 'imnet'" in rejected(config)
    config["sae"]["holdout"] = 0.25
    load_config(config)
    config["miclip"]["units"]["tiny-vit"] = [{"site": "visual.blocks.1.hook_resid_pre", "kind": "sae"}]
    config["sae"]["tokens"] = "class"
    assert "kind sae at visual.blocks.1.hook_resid_pre reads a latent per image" in rejected(config)


def test_a_natural_atlas_dataset_leaves_out_the_decomposed_resnets():
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["analyses"]["datasets"] = ["tiny-shapes", "photos"]
    config["atlas"]["dataset"] = "photos"
    loaded = load_config(config)  # default models: the analysed ones, not the decomposed tiny-rn
    assert loaded.atlas.models == loaded.plan.atlas_models == ("tiny-vit",)
    assert loaded.plan.atlas_dataset == "photos"
    config["atlas"]["models"] = ["tiny-vit", "tiny-rn"]
    message = rejected(config)
    assert "atlas.models names the CLIP-ResNet(s) ['tiny-rn'] (decomposition.models)" in message
    assert "atlas.dataset = 'photos' is a natural-image dataset (kind imagefolder)" in message
    assert "decomposition, which runs on synthetic datasets only" in message
    config["datasets"]["pairs-text"]["words"] = ["dog"]
    config["analyses"] = {"models": ["tiny-vit"], "datasets": ["tiny-shapes", "pairs-text"]}
    config["atlas"] = {"dataset": "pairs-text"}
    assert load_config(config).plan.atlas_models == ("tiny-vit",)


def test_zeroshot_needs_single_label_datasets_and_templates():
    config = natural(tiny())
    message = rejected(config)
    assert (
        "zeroshot.templates is null, but zeroshot.datasets (null: every located dataset with classes) ['photos']"
        in message
    )
    assert "are not ImageNet" in message and "or list in zeroshot.datasets only the datasets to classify" in message
    config["zeroshot"] = {"datasets": ["imnet"]}
    assert load_config(config).plan.zeroshots == (("tiny-vit", "imnet"),)
    config["zeroshot"] = {"datasets": ["pairs-text"], "templates": ["a {}"]}
    assert "'pairs-text', which has no classes to classify: a captions dataset" in rejected(config)
    config["zeroshot"] = {"datasets": ["tiny-shapes"], "templates": ["a {}"]}
    assert "kind shapes is synthetic" in rejected(config)
    config["zeroshot"] = {"datasets": ["imnet"], "models": ["nope"]}
    assert "zeroshot.models names unknown models ['nope']" in rejected(config)
    config["zeroshot"] = {"templates": ["no field"]}
    assert "invalid config at zeroshot.templates.0" in rejected(config)


def test_no_natural_dataset_plans_no_zero_shot():
    loaded = load_config(tiny())
    assert loaded.zeroshot.datasets == () and loaded.plan.zeroshots == ()


# --- YAML ----------------------------------------------------------------------------------------------


def test_read_config_refuses_a_duplicated_key(tmp_path):
    path = tmp_path / "dup.yaml"
    text = TINY.read_text().replace("  k: 5\n", "  k: 5\n  k: 6\n", 1)
    path.write_text(text)
    message = str(pytest.raises(ValueError, read_config, path).value)
    assert f"config file {path}: duplicate key 'k' at line" in message and "write each key once" in message


def test_strict_yaml_keeps_merge_keys(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("a: &x {c: 1, d: 2}\nb:\n  <<: *x\n  c: 3\n")
    assert cfg.read_yaml(path) == {"a": {"c": 1, "d": 2}, "b": {"c": 3, "d": 2}}
    path.write_text("a: {c: 1, c: 2}\n")
    with pytest.raises(ValueError, match="duplicate key 'c' at line 1"):
        cfg.read_yaml(path)


# --- towers, layers and widths (open_clip's model configs) ----------------------------------------------
# tiny-vit: clipmech-vit-tiny, 2 blocks of width 64 (MLP 256), 64 px in patches of 8: 65 tokens per image;
# tiny-rn: clipmech-rn-tiny, 4 stages of 64, 128, 256, 512 channels. tiny-shapes: 40 images.


def test_analysed_models_are_transformers_and_decomposed_ones_resnets():
    config = tiny()
    config["analyses"]["models"] = ["tiny-rn"]
    message = rejected(config)
    assert "analyses.models names 'tiny-rn', whose architecture clipmech-rn-tiny has a CLIP-ResNet" in message
    assert "read the MLP outputs of a transformer's blocks" in message
    config = tiny()
    config["decomposition"]["models"] = ["tiny-rn", "tiny-vit"]
    message = rejected(config)
    assert "decomposition.models names 'tiny-vit', whose architecture clipmech-vit-tiny has a transformer" in message
    assert "attention pool of a CLIP-ResNet (a ModifiedResNet" in message


def test_sae_models_are_transformers():
    config = tiny()
    config["sae"]["models"] = ["tiny-rn"]
    assert "sae.models names 'tiny-rn', whose architecture clipmech-rn-tiny has a CLIP-ResNet" in rejected(config)
    config["sae"]["sites"] = {"tiny-rn": []}  # no SAE: nothing to refuse
    config["miclip"]["units"] = {}
    load_config(config)


def test_extraction_layers_within_the_stored_models():
    config = tiny()
    config["extraction"]["layers"] = [1, 2]
    message = rejected(config)
    assert "extraction.layers: layers [2] are beyond the 2 visual blocks of 'tiny-vit' (clipmech-vit-tiny)" in message
    assert "valid layers: 0..1" in message
    config = tiny()
    config["extraction"]["sites"].append("text.blocks.2.hook_resid_post")
    assert "extraction.sites text.blocks.2.hook_resid_post: layers [2] are beyond the 2 text blocks" in rejected(config)


def test_sae_site_layer_within_the_tower():
    config = tiny()
    config["extraction"]["sites"] = ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"]
    config["sae"]["sites"] = ["visual.blocks.2.hook_resid_pre"]
    config["miclip"]["units"] = {}
    assert "sae.sites visual.blocks.2.hook_resid_pre of tiny-vit: layers [2] are beyond the 2 visual blocks" in (
        rejected(config)
    )


def test_selectivity_reduction_is_extracted():
    config = tiny()
    config["extraction"]["reductions"] = ["mean", "cls"]
    config["selectivity"]["reduction"] = "max"
    assert "selectivity.reduction = 'max' is not stored: extraction.reductions = ['mean', 'cls']" in rejected(config)


@pytest.mark.parametrize("device", ["gpu", "cuda0", "CPU"])
def test_extraction_device(device):
    config = tiny()
    config["extraction"]["device"] = device
    message = rejected(config)
    assert f"invalid config at extraction.device: '{device}' does not match" in message
    assert "allowed: `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`" in message
    config["extraction"]["device"] = "cuda:1"
    assert load_config(config).extraction.gpus == 1


def test_extraction_parts():
    """extraction.parts is how many jobs write a store, not what it holds: it is no part of a job's params."""
    config = tiny()
    assert load_config(config).extraction.part_indices == [0]
    config["extraction"]["parts"] = 3
    loaded = load_config(config)
    assert loaded.extraction.part_indices == [0, 1, 2]
    assert "parts" not in loaded.extraction.params_of("tiny-vit")
    assert loaded.extraction.params_of("tiny-vit") == load_config(tiny()).extraction.params_of("tiny-vit")
    config["extraction"]["parts"] = 0
    assert "invalid config at extraction.parts: 0 is less than the minimum of 1" in rejected(config)


def test_timm_towers_are_left_to_loading():
    """A timm vision tower's depth and width are timm's: the MiCLIP site and tau checks pass it (no KeyError)."""
    config = tiny()
    config["models"]["siglip"] = {"architecture": "ViT-B-16-SigLIP", "pretrained": None}
    config["miclip"]["units"]["siglip"] = [{"site": "visual.blocks.30.hook_mlp_out", "kind": "neurons"}]
    assert ("siglip", "visual.blocks.30.hook_mlp_out", "neurons") in load_config(config).plan.miclip_units


# --- SAE sizes ---------------------------------------------------------------------------------------------


def test_sae_k_at_most_the_latents():
    config = tiny()
    config["sae"]["k"] = 129
    message = rejected(config)
    assert "sae.k = 129 exceeds the 128 latents of the SAE of 'tiny-vit' at visual.blocks.1.hook_resid_pre" in message
    assert "(sae.expansion = 2 x d = 64, the width of visual.blocks.1.hook_resid_pre" in message
    config["sae"]["n_latents"] = 100
    assert "sae.k = 129 exceeds the 100 latents" in rejected(config) and "(sae.n_latents = 100)" in rejected(config)
    config["sae"]["k"] = 100
    load_config(config)


@pytest.mark.parametrize(
    ("expansion", "problem"), [(0.01, "0.64 latents, fewer than one"), (1.01, "64.64 latents, not")]
)
def test_sae_expansion_gives_whole_latents(expansion, problem):
    config = tiny()
    config["sae"].update(expansion=expansion, k=1)
    message = rejected(config)
    assert f"sae.expansion = {expansion} x d = 64" in message and problem in message
    config["sae"]["n_latents"] = 64
    load_config(config)


def test_sae_token_budget_of_one_batch():
    config = tiny()
    config["sae"]["n_tokens"] = 255
    assert "sae.n_tokens = 255 is under one batch of sae.batch_size = 256 tokens" in rejected(config)


def test_sae_buffer_holds_a_chunk():
    config = tiny()
    config["sae"]["buffer_tokens"] = 1039
    message = rejected(config)
    assert "sae.buffer_tokens = 1039 holds less than one zarr chunk of the store of 'tiny-vit'" in message
    assert "16 images (extraction.batch_size = 16, at most the 36 training images) x 65 tokens per image" in message
    assert "set sae.buffer_tokens to at least 1040" in message
    config["sae"]["tokens"] = "patch"  # 64 tokens per image
    load_config(config)
    config["extraction"]["batch_size"] = 64  # larger than the 36 training images
    assert "36 images (extraction.batch_size = 64, at most the 36 training images) x 64" in rejected(config)


@pytest.mark.parametrize(("holdout", "n_heldout"), [(0.0, 0), (0.01, 0), (0.99, 40)])
def test_sae_holdout_leaves_images_on_both_sides(holdout, n_heldout):
    config = tiny()
    config["sae"]["holdout"] = holdout
    message = rejected(config)
    assert f"sae.holdout = {holdout} holds out {n_heldout} of the 40 images of dataset 'tiny-shapes'" in message
    assert "holds out 1 to 39 images" in message


def test_sae_text_site_takes_all_tokens():
    config = tiny()
    config["extraction"]["sites"].append("text.blocks.1.hook_resid_post")
    config["sae"].update(sites=["text.blocks.1.hook_resid_post"], tokens="patch")
    config["miclip"]["units"] = {}
    assert "sae.tokens = patch, but the SAE of 'tiny-vit' at the text-tower site" in rejected(config)
    config["sae"]["tokens"] = "all"
    config["sae"]["buffer_tokens"] = 16 * 48 - 1  # 48 caption tokens per image (context_length)
    assert "x 48 tokens per image" in rejected(config)


# --- MiCLIP sizes ------------------------------------------------------------------------------------------


def test_miclip_tau_at_most_the_units():
    config = tiny()
    config["miclip"]["tau"] = 65
    message = rejected(config)
    assert (
        "miclip.tau = 65 exceeds the 64 units of the unit set {site: visual.blocks.1.hook_mlp_out, kind: neurons}"
        in (message)
    )
    assert "miclip.units.tiny-vit (the channels of visual.blocks.1.hook_mlp_out of clipmech-vit-tiny)" in message
    config["miclip"]["units"]["tiny-vit"] = [{"site": "visual.blocks.1.hook_resid_pre", "kind": "sae"}]
    config["miclip"]["tau"] = 129
    message = rejected(config)
    assert "exceeds the 128 units of the unit set {site: visual.blocks.1.hook_resid_pre, kind: sae}" in message
    assert "the latents of its SAE: sae.expansion = 2 x d = 64" in message
    config["miclip"]["units"] = {"tiny-rn": [{"site": "visual.blocks.0.hook_resid_post", "kind": "neurons"}]}
    config["miclip"]["tau"] = 65  # stage 0 of tiny-rn: 16 x 4 channels
    assert "exceeds the 64 units" in rejected(config)


def test_miclip_k_top_at_most_the_heldout_images():
    config = tiny()
    config["miclip"]["k_top"] = 21
    message = rejected(config)
    assert "miclip.k_top = 21 exceeds the 20 held-out images of miclip.dataset 'tiny-shapes'" in message
    assert "(round(miclip.holdout = 0.5 x 40))" in message
    config["miclip"]["k_top"] = None
    config["selectivity"]["k"] = 25
    assert "miclip.k_top (null: selectivity.k) = 25 exceeds the 20 held-out images" in rejected(config)
    config["miclip"]["holdout"] = 0.99
    assert "miclip.holdout = 0.99 holds out 40 of the 40 images of dataset 'tiny-shapes'" in rejected(config)


def test_miclip_unit_sets_once():
    config = tiny()
    config["miclip"]["units"]["tiny-vit"].append({"site": "visual.blocks.1.hook_mlp_out", "kind": "neurons"})
    assert "miclip.units.tiny-vit lists the unit set {site: visual.blocks.1.hook_mlp_out, kind: neurons} twice" in (
        rejected(config)
    )


# --- patching ------------------------------------------------------------------------------------------


def test_patching_families_of_the_traced_towers():
    config = tiny()
    config["patching"]["families"]["transformer"] = []
    assert "patching.families.transformer is empty, but causal tracing runs the text tower" in rejected(config)
    config = tiny()
    config["patching"]["families"]["resnet"] = []
    assert "patching.families.resnet is empty, but patching.models ['tiny-rn'] are CLIP-ResNets" in rejected(config)
    config["patching"]["models"] = ["tiny-vit"]
    load_config(config)
    config["patching"]["families"]["transformer"] = []
    config["patching"]["datasets"] = []  # no causal tracing: nothing to refuse
    load_config(config)


def captions_traced(**patching):
    """tiny.yaml with the natural datasets and causal tracing of tiny-vit on the captions dataset pairs-text too."""
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["datasets"]["pairs-text"]["words"] = ["dog", "red car"]
    config["patching"] |= {"models": ["tiny-vit"], "datasets": ["tiny-shapes-pairs", "pairs-text"], **patching}
    config["patching"]["concepts"] = {"datasets": ["tiny-shapes-pairs"]}
    return config


def test_causal_tracing_on_a_captions_dataset_runs_the_embedding_corruptions_only():
    message = rejected(captions_traced(corruptions=["colour", "binding"]))
    assert message.startswith("patching.corruptions lists ['colour', 'binding'], Shapes minimal pairs only, but ")
    assert "captions dataset(s) ['pairs-text']" in message and "add at least one of zero, noise" in message
    loaded = load_config(captions_traced(corruptions=["zero", "colour", "binding"]))
    # The pairs dataset runs every listed corruption, the captions dataset the embedding ones among them.
    assert loaded.tracing_corruptions("tiny-shapes-pairs") == ("zero", "colour", "binding")
    assert loaded.tracing_corruptions("pairs-text") == ("zero",)
    assert loaded.tracing_params("pairs-text")["corruptions"] == ["zero"]
    assert loaded.tracing_params("tiny-shapes-pairs") == {
        **loaded.patching.params("models", "datasets", "concepts", "foil"),
        "seed": loaded.seed,
    }
    loaded = load_config(captions_traced())  # tiny.yaml's [noise, binding]: the captions run noise
    assert loaded.tracing_corruptions("pairs-text") == ("noise",)
    assert loaded.tracing_corruptions("tiny-shapes-pairs") == ("noise", "binding")
    assert loaded.plan.patchings == (("tiny-vit", "tiny-shapes-pairs"), ("tiny-vit", "pairs-text"))
    assert "results/patching/tiny-vit/pairs-text/circuit.png" in loaded.patching_targets()
    # The foils go to the captions dataset's job only; its pairs are at most n_pairs (or its n_images).
    assert loaded.patching_foil("tiny-shapes-pairs") is None
    assert loaded.patching_foil("pairs-text") == {"attributes": list(cfg.Foil().attributes), "kind": "object"}
    assert loaded.tracing_pairs("pairs-text") == loaded.patching.n_pairs
    config = captions_traced(corruptions=["noise"])
    config["datasets"]["pairs-text"]["n_images"] = 2
    assert load_config(config).tracing_pairs("pairs-text") == 2


def test_object_foils_need_the_captions_datasets_nouns():
    config = captions_traced(corruptions=["zero"])
    del config["datasets"]["pairs-text"]["words"]
    assert "has no object nouns to swap: set datasets.pairs-text.words" in rejected(config)
    config["datasets"]["pairs-text"]["instances"] = "/data/instances.json"  # COCO categories
    load_config(config)
    del config["datasets"]["pairs-text"]["instances"]
    config["patching"]["foil"] = {"kind": "attribute", "attributes": ["red", "blue"]}
    assert load_config(config).patching_foil("pairs-text") == {"attributes": ["red", "blue"], "kind": "attribute"}
    config["patching"]["foil"] = {"kind": "attribute", "attributes": ["red"]}
    assert "invalid config at patching.foil.attributes" in rejected(config)  # the schema: 2 words at least


def test_concept_datasets_default_to_the_pairs_and_may_name_natural_ones():
    loaded = load_config(tiny())
    assert loaded.patching.concepts.datasets == loaded.patching.datasets == ("tiny-shapes-pairs",)
    assert loaded.plan.concepts == loaded.plan.concept_interventions == loaded.plan.patchings
    assert not any("concept" in line for line in loaded.skipped())
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["datasets"]["pairs-text"]["instances"] = "/data/instances.json"
    config["patching"]["models"] = ["tiny-vit"]
    config["patching"]["concepts"] = {"datasets": ["tiny-shapes-pairs", "tiny-shapes", "photos", "pairs-text"]}
    loaded = load_config(config)
    assert loaded.plan.patchings == (("tiny-vit", "tiny-shapes-pairs"),)
    assert [d for _, d in loaded.plan.concepts] == ["tiny-shapes-pairs", "tiny-shapes", "photos", "pairs-text"]
    assert [d for _, d in loaded.plan.concept_interventions] == ["tiny-shapes-pairs", "tiny-shapes"]
    base = "results/patching/tiny-vit"
    assert loaded.patching_targets() == [
        f"{base}/tiny-shapes-pairs/circuit.png",
        f"{base}/tiny-shapes-pairs/auroc.png",
        f"{base}/tiny-shapes-pairs/interventions.png",
        f"{base}/tiny-shapes/auroc.png",
        f"{base}/tiny-shapes/interventions.png",
        f"{base}/photos/auroc.png",
        f"{base}/pairs-text/auroc.png",
    ]
    skipped = [line for line in loaded.skipped() if "concept" in line]
    assert [line.split()[0] for line in skipped] == ["photos", "pairs-text"]  # said once per dataset
    assert "the concept interventions (intervene_concepts) do not" in skipped[0]
    assert loaded.concept_data("photos") == "results/datasets/photos/data"
    assert loaded.indexed_only() == ["imnet"]  # the concept AUROC reads photos and pairs-text
    # The atlas reads the concept AUROC of the minimal pairs, whatever patching.concepts.datasets says.
    assert loaded.atlas_patching_inputs("tiny-vit") == {
        "auroc": f"{base}/tiny-shapes-pairs/auroc.tsv",
        "recovery": f"{base}/tiny-shapes-pairs/recovery.tsv",
    }
    assert loaded.atlas_patching_inputs("tiny-rn") == {}
    # Changing which datasets get the concept AUROC changes no job's params.
    assert "datasets" not in loaded.patching.concepts.pick("batch_size", "threshold")


def test_concept_datasets_without_concepts_are_refused():
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["patching"]["concepts"] = {"datasets": ["absent"]}
    assert "patching.concepts.datasets names unknown datasets ['absent']" in rejected(config)
    config["patching"]["concepts"] = {"datasets": ["pairs-text"]}
    message = rejected(config)
    assert "patching.concepts.datasets names 'pairs-text', but dataset 'pairs-text' is a captions dataset" in message
    assert "set datasets.pairs-text.words" in message and "datasets.pairs-text.instances" in message
    config["patching"]["concepts"] = {"datasets": ["tiny-shapes-shift"]}
    message = rejected(config)
    assert "dataset 'tiny-shapes-shift' is of kind shift, which has no concepts for the concept AUROC" in message
    assert "the kinds with concepts are: shapes, pairs, imagenet, imagefolder, cifar10, captions" in message
    # Asked for by name (a target outside the plan), rule concept_auroc's input refuses the same datasets.
    config["patching"]["concepts"] = {"datasets": []}
    loaded = load_config(config)
    assert any(line.startswith("concept selectivity (concept_auroc) does not run") for line in loaded.skipped())
    assert loaded.patching_targets() == ["results/patching/tiny-vit/tiny-shapes-pairs/circuit.png"] + [
        "results/patching/tiny-rn/tiny-shapes-pairs/circuit.png"
    ]
    with pytest.raises(ValueError, match="rule concept_auroc: dataset 'pairs-text' is a captions dataset without"):
        loaded.concept_data("pairs-text")
    with pytest.raises(ValueError, match="rule concept_auroc: dataset 'tiny-shapes-shift' is of kind shift"):
        loaded.concept_data("tiny-shapes-shift")
    assert loaded.concept_data("imnet") == "results/datasets/imnet/data"
    # The interventions read the 16 Shapes features: a natural dataset is refused by their input.
    with pytest.raises(ValueError, match="but photos is a natural-image dataset"):
        loaded.synthetic_data("photos")


def test_superposition_of_a_natural_dataset_says_why_it_does_not_run():
    config = natural(tiny())
    config["zeroshot"] = {"datasets": []}
    config["analyses"]["datasets"] = ["tiny-shapes", "photos"]
    loaded = load_config(config)
    assert loaded.plan.shapes_analyses == (("tiny-vit", "tiny-shapes"),)
    said = loaded.skipped()[0]
    assert said.startswith("photos is a natural-image dataset") and said.endswith(cfg.NO_NATURAL_SUPERPOSITION)
    with pytest.raises(ValueError) as error:
        loaded.synthetic_data("photos")
    assert "which has none" in str(error.value) and cfg.NO_NATURAL_SUPERPOSITION in str(error.value)
    assert "caption words and COCO categories are not values of one attribute" in cfg.NO_NATURAL_SUPERPOSITION


# --- natural-image datasets not located yet ---------------------------------------------------------------

#: The location keys config/paper.yaml leaves null, in the order the error lists them (by dataset name).
PAPER_LOCATIONS = [
    "datasets.cifar10-test.root",
    "datasets.coco-val.path",
    "datasets.coco-val.instances",
    "datasets.imagenet-train.root",
    "datasets.imagenet-val.root",
    "datasets.pascal-context-val.root",
]


def test_paper_config_lists_every_location_to_set():
    """One error names every null location the run needs, each with its kind, its uses and its layout."""
    message = rejected(yaml.safe_load(PAPER.read_text()))
    listed = [line.split()[1] for line in message.splitlines() if line.startswith("  - ")]
    assert listed == PAPER_LOCATIONS
    assert "docs/datasets.md" in message.splitlines()[0]
    assert (
        "datasets.imagenet-val.root (kind imagenet; for zeroshot.datasets, decomposition.datasets): ILSVRC2012 as "
        "class folders" in message
    )
    assert "datasets.pascal-context-val.root (kind pascal_context; for decomposition.pascal_context.dataset)" in message
    assert "datasets.coco-val.path (kind captions; for patching.datasets, patching.concepts.datasets)" in message


def test_an_unused_dataset_may_stay_unlocated():
    """A null location is refused only where something uses the dataset; otherwise it is skipped, said so."""
    config = tiny()
    config["datasets"]["later"] = {"kind": "imagenet", "root": None}
    config["datasets"]["coco"] = {"kind": "captions", "path": None}
    config["zeroshot"] = {"models": [], "datasets": ["later"]}  # no model: nothing is classified
    loaded = load_config(config)
    assert loaded.unlocated() == ["later", "coco"] and loaded.indexed_only() == []
    del config["zeroshot"]
    assert load_config(config).zeroshot.datasets == ()  # the default classifies located datasets only
    skipped = [line for line in loaded.skipped() if "is null and no analysis uses" in line]
    assert [line.split()[0] for line in skipped] == ["datasets.later.root", "datasets.coco.path"]
    with pytest.raises(ValueError, match=r"datasets\.later\.root is null: set it to ILSVRC2012"):
        loaded.dataset_spec("later")
    config["analyses"]["datasets"].append("later")
    config["patching"]["concepts"] = {"datasets": ["coco"]}
    message = rejected(config)
    assert "datasets.later.root (kind imagenet; for analyses.datasets)" in message
    assert "datasets.coco.path (kind captions; for patching.concepts.datasets)" in message
    assert "datasets.coco.instances (for patching.concepts.datasets, which read concepts)" in message


def test_paper_config_on_local_copies_plans_and_indexes_them(tmp_path, monkeypatch):
    """config/paper.yaml with its locations set to tiny copies plans every natural-image job, and each copy
    indexes as the config declares it (its n_images cut to the copies' sizes)."""
    config = load_config(located(yaml.safe_load(PAPER.read_text()), paper_copies(tmp_path / "data", monkeypatch)))
    plan = config.plan
    assert ("rn50x16", "imagenet-val") in plan.decompositions
    assert ("rn50x16", "imagenet-val") not in plan.shapes_decompositions
    assert plan.zeroshots == (("vit-l-14", "imagenet-val"), ("rn50x16", "imagenet-val"))
    traced = {("vit-b-32", "coco-val"), ("siglip-so400m", "coco-val")}
    assert traced <= set(plan.patchings) and traced <= set(plan.concepts)
    assert plan.patchings[0] == ("vit-b-32", "shapes-pairs")  # the atlas reads the first dataset's recovery
    assert config.miclip.dataset == "imagenet-train" and config.tsne.cifar10 == "cifar10-test"
    assert config.decomposition.pascal_context.dataset == "pascal-context-val"
    assert config.unlocated() == [] and config.indexed_only() == []
    counts = {"imagenet-val": 2, "imagenet-train": 2, "pascal-context-val": 3, "cifar10-test": 4, "coco-val": 4}
    for name in config.natural_datasets():
        spec = config.dataset_spec(name)
        if spec["n_images"] is not None:
            spec["n_images"] = counts[name]
        written = write_natural_dataset(tmp_path / "out" / name, spec)
        assert written["n_images"] == counts[name], name
