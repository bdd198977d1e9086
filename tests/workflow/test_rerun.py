"""Rerun only what changed: after one full tiny run, dry runs show which rules a change reruns.

The expected plan of a change to rule R is Snakemake's own plan for ``--forcerun R`` on the
unchanged workflow: R and everything downstream of it, nothing upstream.

Package edits (``clipmech.codehash``) are made in a copy of the workflow (Snakefile, workflow/,
src/, config/, profiles/, environment.yml) in a temporary directory, never in the source tree. The
copy's ``Snakefile`` puts the copy's ``src/`` first on sys.path (it inserts
``<Snakefile dir>/src``), and PYTHONPATH points there too, so its Snakemake hashes and imports the
copy's package; the unedited copy planning nothing checks that it hashes like the original.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from snakemake_cli import ROOT, TINY, planned_jobs, snakemake

pytestmark = pytest.mark.integration

UPSTREAM = ("synthesize_shapes", "train_clip", "extract_activations")


def changed_config(tmp_path, section, entry, key, value):
    """tests/config/tiny.yaml with ``config[section][entry][key] = value`` (no entry: ``[section][key]``)."""
    config = yaml.safe_load(TINY.read_text())
    target = config[section] if entry is None else config[section][entry]
    assert key in target, f"{section}/{entry} has no key {key!r} in {TINY}"
    target[key] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def forcerun_plan(workdir, *rules):
    return planned_jobs("--configfile", TINY, "--forcerun", *rules, workdir=workdir)


def test_finished_run_plans_nothing(tiny_run):
    assert planned_jobs("--configfile", TINY, workdir=tiny_run) == {}


def test_selectivity_k_reruns_selectivity_and_downstream_only(tiny_run, tmp_path):
    k = yaml.safe_load(TINY.read_text())["selectivity"]["k"]
    plan = planned_jobs("--configfile", changed_config(tmp_path, "selectivity", None, "k", k + 1), workdir=tiny_run)
    assert {"neuron_selectivity", "plot_selectivity"} <= plan.keys()
    assert not plan.keys() & {*UPSTREAM, "plot_dataset", "plot_training"}
    # Algorithm 1's k has one owner: the atlases (the ResNet's neurons and pairs, the SAE's latents), MiCLIP's
    # ground truth and the SAE evaluation's entropy run with it too (atlas.k, miclip.k_top and
    # sae.evaluate.entropy_k null = selectivity.k).
    assert plan == forcerun_plan(
        tiny_run, "neuron_selectivity", "plot_selectivity", "build_atlas", "evaluate_miclip", "evaluate_sae"
    )


def test_extraction_sites_of_one_model_rerun_its_store_only(tiny_run, tmp_path):
    """extraction.sites as a mapping: tiny-vit keeps its list (no rerun); tiny-rn's attention-pool store reads no
    site (no rerun either); a new site of tiny-vit alone reruns its store and what reads it."""
    sites = yaml.safe_load(TINY.read_text())["extraction"]["sites"]
    same = changed_config(tmp_path, "extraction", None, "sites", {"tiny-vit": sites})
    assert planned_jobs("--configfile", same, workdir=tiny_run) == {}
    more = changed_config(
        tmp_path, "extraction", None, "sites", {"tiny-vit": [*sites, "visual.blocks.0.hook_resid_post"]}
    )
    plan = planned_jobs("--configfile", more, workdir=tiny_run)
    assert plan["extract_activations"] == 1 and "extract_attnpool" not in plan
    assert plan == planned_jobs("--configfile", TINY, "--forcerun", "extract_activations", workdir=tiny_run)


def test_dataset_seed_reruns_everything_downstream_of_synthesis(tiny_run, tmp_path):
    seed = yaml.safe_load(TINY.read_text())["datasets"]["tiny-shapes"]["seed"]
    plan = planned_jobs(
        "--configfile", changed_config(tmp_path, "datasets", "tiny-shapes", "seed", seed + 1), workdir=tiny_run
    )
    assert {
        "synthesize_shapes",
        "plot_dataset",
        "extract_activations",
        "neuron_selectivity",
        "plot_selectivity",
    } <= plan.keys()
    assert not plan.keys() & {"train_clip", "plot_training"}  # the model is trained on its own scene stream
    assert plan == forcerun_plan(tiny_run, "synthesize_shapes")


def test_shift_dataset_seed_reruns_the_shift_splits_only(tiny_run, tmp_path):
    """The shift splits are a dataset of their own: changing them leaves the base dataset's jobs alone (the
    shift figure is redrawn from the new tables)."""
    seed = yaml.safe_load(TINY.read_text())["datasets"]["tiny-shapes-shift"]["seed"]
    plan = planned_jobs(
        "--configfile", changed_config(tmp_path, "datasets", "tiny-shapes-shift", "seed", seed + 1), workdir=tiny_run
    )
    assert plan == {"synthesize_shift": 1, "extract_attnpool": 1, "monitor_shift": 1, "plot_shift": 1, "all": 1}
    assert plan == forcerun_plan(tiny_run, "synthesize_shift")


def copy_workflow(destination: Path) -> Path:
    """Copy what the Snakefile needs to run into ``destination``; return the copy's Snakefile."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("workflow", "src", "config", "profiles"):
        shutil.copytree(ROOT / name, destination / name, ignore=skip)
    for name in ("Snakefile", "environment.yml"):
        shutil.copy2(ROOT / name, destination / name)
    return destination / "Snakefile"


def edit_function(module: Path, function: str) -> None:
    """Add a statement at the top of ``function``'s body in the module file (a real code change)."""
    source = module.read_text()
    matches = [
        node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef) and node.name == function
    ]
    assert len(matches) == 1, f"{module} defines {len(matches)} functions named {function!r}"
    first = matches[0].body[0]
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, " " * first.col_offset + "edited_by_test = True\n")
    module.write_text("".join(lines))
    ast.parse(module.read_text())


@pytest.mark.parametrize(
    ("module", "function", "rule", "untouched"),
    [
        ("models/train.py", "_lr_at", "train_clip", {"synthesize_shapes", "plot_dataset"}),
        (
            "stages/neuron_selectivity.py",
            "neuron_selectivity",
            "neuron_selectivity",
            {*UPSTREAM, "plot_dataset", "plot_training"},
        ),
        # A figure function reruns the plot rule that draws the figure, not the decomposition whose scores it
        # draws, the stores it reads or the atlas.
        (
            "figures/norms.py",
            "component_norms",
            "plot_decomposition",
            {
                *UPSTREAM,
                "extract_attnpool",
                "embed_text",
                "decompose_attnpool",
                "ablate_components",
                "decompose_text",
                "find_registers",
                "build_atlas",
            },
        ),
        # The selectivity code reruns the selectivity rules and their readers, the SAE evaluation
        # (its Algorithm 1 entropy of the latents), MiCLIP's evaluation (its ground truth) and the atlases
        # (Algorithm 1 of their units), not the data, the models or the SAE's training.
        (
            "analyses/selectivity.py",
            "entropy",
            ("neuron_selectivity", "evaluate_sae", "evaluate_miclip", "build_atlas"),
            {*UPSTREAM, "plot_dataset", "plot_training", "train_sae"},
        ),
        # The patching engine reruns causal tracing and its figures, not the pairs, the models or other analyses.
        (
            "patching/engine.py",
            "_restorer",
            "patch_components",
            {*UPSTREAM, "synthesize_pairs", "plot_training", "neuron_selectivity", "decompose_attnpool"},
        ),
        ("figures/tracing.py", "circuit_curves", "plot_patching", {*UPSTREAM, "synthesize_pairs", "patch_components"}),
        # Figures of the MiCLIP, concept and SAE evaluations are drawn by plot rules: editing one reruns the
        # plot rule only, not the training or evaluation whose tables it draws.
        (
            "figures/miclip.py",
            "delta_bars",
            ("plot_miclip_training", "plot_miclip"),
            {*UPSTREAM, "probe_miclip", "train_miclip", "evaluate_miclip", "build_atlas"},
        ),
        (
            "figures/patching.py",
            "auroc_by_layer",
            ("plot_concepts", "plot_interventions"),
            {*UPSTREAM, "synthesize_pairs", "concept_auroc", "intervene_concepts", "build_atlas"},
        ),
        (
            "figures/sae_eval.py",
            "firing_histogram",
            "plot_sae_evaluation",
            {*UPSTREAM, "train_sae", "evaluate_sae", "evaluate_miclip", "build_atlas"},
        ),
        # So are those of Grad-CAM, the segmentation and the t-SNE: their computations write the examples and
        # silhouettes the figures show (examples.npz, tsne.json), and editing a figure does not rerun them.
        ("figures/gradcam.py", "gradcam_rows", "plot_gradcam", {*UPSTREAM, "gradcam_binding"}),
        (
            "figures/segmentation.py",
            "class_heatmaps",
            "plot_segmentation",
            {"synthesize_shapes", "train_clip", "extract_attnpool", "embed_text", "segment_shapes"},
        ),
        ("figures/tsne.py", "tsne_shapes", "plot_tsne_shapes", {*UPSTREAM, "tsne_shapes"}),
        # The SAE model reruns the SAE training and its figure, and MiCLIP's evaluations and the atlases
        # (they load SAEs), not the activation store it reads or the models.
        (
            "sae/model.py",
            "geometric_median",
            ("train_sae", "evaluate_miclip", "build_atlas"),
            {*UPSTREAM, "plot_dataset", "plot_training", "neuron_selectivity", "patch_components"},
        ),
        # The atlas's rendering reruns the atlases only.
        (
            "atlas/render.py",
            "number",
            "build_atlas",
            {*UPSTREAM, "neuron_selectivity", "decompose_attnpool", "decompose_text", "train_sae", "evaluate_sae"},
        ),
        # MiCLIP: the encoder's loss retrains the encoders (and what reads them), not the probe; a baseline
        # reruns the evaluation only, not the probe or the encoders.
        (
            "miclip/encoder.py",
            "symmetric_infonce",
            ("train_miclip", "evaluate_miclip"),
            {*UPSTREAM, "embed_miclip_concepts", "probe_miclip", "train_sae"},
        ),
        (
            "miclip/baselines.py",
            "soft_wpmi",
            "evaluate_miclip",
            {*UPSTREAM, "embed_miclip_concepts", "probe_miclip", "train_miclip", "train_sae"},
        ),
        pytest.param(
            "decomposition/omp.py",
            "omp",
            "decompose_text",
            {*UPSTREAM, "extract_attnpool", "embed_text", "decompose_attnpool", "ablate_components"},
            id="decomposition/omp.py-omp",
        ),
    ],
)
def test_package_edit_reruns_the_rule_that_runs_it(tiny_run, tmp_path, module, function, rule, untouched):
    snakefile = copy_workflow(tmp_path / "copy")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "copy" / "src")}
    # Control: the unedited copy hashes its package like the source tree does.
    assert planned_jobs("--configfile", TINY, workdir=tiny_run, snakefile=snakefile, env=env) == {}

    edit_function(tmp_path / "copy" / "src" / "clipmech" / module, function)
    plan = planned_jobs("--configfile", TINY, workdir=tiny_run, snakefile=snakefile, env=env)
    rules = (rule,) if isinstance(rule, str) else rule
    assert set(rules) <= plan.keys() and not plan.keys() & untouched
    assert plan == forcerun_plan(tiny_run, *rules)
    assert (ROOT / "src" / "clipmech" / module).read_text().count("edited_by_test") == 0


def test_a_moved_project_and_its_results_rerun_nothing(tiny_run, tmp_path):
    """A finished run moved elsewhere with its workflow (or a fresh clone beside copied results) plans
    nothing: the code hash covers scripts and package, and no rerun trigger reads the project's path."""
    snakefile = copy_workflow(tmp_path / "moved")
    shutil.copytree(tiny_run, tmp_path / "moved" / "run", symlinks=True)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "moved" / "src")}
    assert planned_jobs("--configfile", TINY, workdir=tmp_path / "moved" / "run", snakefile=snakefile, env=env) == {}


def test_config_key_order_reruns_nothing(tiny_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(config, sort_keys=True))
    assert reordered.read_text() != yaml.safe_dump(config, sort_keys=False)  # the order really differs
    assert planned_jobs("--configfile", reordered, workdir=tiny_run) == {}


def test_comments_and_docstrings_rerun_nothing(tiny_run, tmp_path):
    """Only code counts: a comment and a docstring edit in the dataset synthesis (which every rule
    runs), and a touched and commented workflow script, plan nothing, where hashing the source text reran
    the whole DAG, trainings included."""
    snakefile = copy_workflow(tmp_path / "copy")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "copy" / "src")}
    module = tmp_path / "copy" / "src" / "clipmech" / "data" / "shapes.py"
    source = module.read_text()
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree, clean=False)
    edited = source.replace(docstring, docstring + "\nEdited by a test.", 1) + "\n# a comment added by a test\n"
    module.write_text(edited)
    assert ast.dump(ast.parse(edited)) != ast.dump(tree)  # the docstring really changed
    # A workflow script touched (a newer mtime) and commented: scripts are code, not inputs.
    script = tmp_path / "copy" / "workflow" / "scripts" / "train_clip.py"
    script.write_text("# a comment added by a test\n" + script.read_text())
    os.utime(script, (time.time() + 60, time.time() + 60))
    assert planned_jobs("--configfile", TINY, workdir=tiny_run, snakefile=snakefile, env=env) == {}


def test_model_config_edit_reruns_that_models_jobs(tiny_run, tmp_path):
    """The open_clip model configs are package data the rules read, hashed per model (their `model_config`
    param, clipmech.codehash.model_config_sha256): editing the ViT's (here quick_gelu) reruns the ViT's
    training and what reads its checkpoint, not the ResNet's jobs or the datasets."""
    snakefile = copy_workflow(tmp_path / "copy")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "copy" / "src")}
    path = tmp_path / "copy" / "src" / "clipmech" / "models" / "model_configs" / "clipmech-vit-tiny.json"
    config = json.loads(path.read_text())
    config["quick_gelu"] = not config.get("quick_gelu", False)
    path.write_text(json.dumps(config, indent=2))
    plan = planned_jobs("--configfile", TINY, workdir=tiny_run, snakefile=snakefile, env=env)
    assert {"train_clip", "extract_activations"} <= plan.keys() and plan["train_clip"] == 1
    assert not plan.keys() & {"synthesize_shapes", "synthesize_shift", "plot_dataset"}
    assert plan == planned_jobs(
        "--configfile", TINY, "--forcerun", "results/models/tiny-vit/checkpoint.pt", workdir=tiny_run
    )


def test_patching_pairs_rerun_patching_only(tiny_run, tmp_path):
    n_pairs = yaml.safe_load(TINY.read_text())["patching"]["n_pairs"]
    plan = planned_jobs(
        "--configfile", changed_config(tmp_path, "patching", None, "n_pairs", n_pairs + 1), workdir=tiny_run
    )
    assert plan == forcerun_plan(tiny_run, "patch_components")
    # The atlases show the effects; the causal-tracing paper's comparison reads the circuit summary.
    assert plan.keys() == {"patch_components", "plot_patching", "build_atlas", "compare_paper", "all"}
    assert plan["compare_paper"] == 1


def test_patching_model_list_is_not_a_parameter(tiny_run, tmp_path):
    """Dropping a model from patching.models leaves the remaining models' jobs unchanged; only the dropped
    model's atlas is rebuilt (it loses its patching sections), and the causal-tracing paper's comparison, which
    loses that model's rows."""
    models = yaml.safe_load(TINY.read_text())["patching"]["models"]
    assert planned_jobs(
        "--configfile", changed_config(tmp_path, "patching", None, "models", models[:1]), workdir=tiny_run
    ) == {"build_atlas": 1, "compare_paper": 1, "all": 1}


def test_sae_k_reruns_the_sae_only(tiny_run, tmp_path):
    k = yaml.safe_load(TINY.read_text())["sae"]["k"]
    plan = planned_jobs("--configfile", changed_config(tmp_path, "sae", None, "k", k + 1), workdir=tiny_run)
    assert plan == forcerun_plan(tiny_run, "train_sae")
    # ... and what reads the SAE: its MiCLIP unit set, the atlas and MiCLIP's paper comparison.
    assert plan.keys() == {
        "train_sae",
        "plot_sae_training",
        "evaluate_sae",
        "plot_sae_evaluation",
        "evaluate_miclip",
        "plot_miclip",
        "build_atlas",
        "compare_paper",
        "all",
    }


def test_miclip_steps_rerun_the_miclip_family_only(tiny_run, tmp_path):
    """More encoder steps retrain the encoders and rerun their evaluation, the atlases that show it and MiCLIP's
    paper comparison, not the probe, the models or the SAE."""
    steps = yaml.safe_load(TINY.read_text())["miclip"]["steps"]
    plan = planned_jobs("--configfile", changed_config(tmp_path, "miclip", None, "steps", steps + 1), workdir=tiny_run)
    assert plan == forcerun_plan(tiny_run, "train_miclip")
    assert plan.keys() == {
        "train_miclip",
        "plot_miclip_training",
        "evaluate_miclip",
        "plot_miclip",
        "build_atlas",
        "compare_paper",
        "all",
    }
    assert plan["train_miclip"] == 3 and plan["evaluate_miclip"] == 3  # three sites, three unit sets
    assert plan["plot_miclip_training"] == 3 and plan["plot_miclip"] == 3


def test_atlas_settings_rerun_the_atlases_only(tiny_run, tmp_path):
    max_units = yaml.safe_load(TINY.read_text())["atlas"]["max_units"]
    plan = planned_jobs(
        "--configfile", changed_config(tmp_path, "atlas", None, "max_units", max_units + 1), workdir=tiny_run
    )
    assert plan == forcerun_plan(tiny_run, "build_atlas")
    assert plan == {"build_atlas": 2, "all": 1}


def test_a_second_checkouts_jobs_import_its_own_package(tmp_path):
    """A copy of the workflow beside the installed one: its jobs run the copy's package (the code their
    code hash covers), not the editable install of the first checkout, with no PYTHONPATH set."""
    snakefile = copy_workflow(tmp_path / "copy")
    stage = tmp_path / "copy" / "src" / "clipmech" / "stages" / "synthesize_shapes.py"
    stage.write_text(stage.read_text() + '\n__import__("pathlib").Path("stage_module.txt").write_text(__file__)\n')
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    (tmp_path / "run").mkdir()
    snakemake(
        "results/datasets/tiny-shapes/data", "--configfile", TINY, "--cores", "1",
        workdir=tmp_path / "run", snakefile=snakefile, env=env,
    )  # fmt: skip
    assert (tmp_path / "run" / "stage_module.txt").read_text() == str(stage)
