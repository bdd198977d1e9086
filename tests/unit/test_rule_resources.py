"""Rule resources (clipmech.resources): the formulas on cases computed by hand, the retry growth, the GPU/CPU
split, the model shapes against open_clip's own models, and every rule of workflow/rules/ wired to its own entry.

tests/workflow/test_resources.py checks the declared memory against the tiny run's measured peaks and the
growth of the formula against the growth the code shows.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake_cli import PAPER, ROOT, TINY, located, paper_locations

from clipmech import resources
from clipmech.config import load_config
from clipmech.resources import BASELINE_MB, FLOAT64, MARGIN, MB, RuleResources

# tiny-rn (clipmech-rn-tiny): width 16 -> C = 512 channels, H = 8 heads of 64, T = (128 / 32)^2 + 1 = 17 tokens,
# E = 64; tiny-shapes: 8 images per object count, 1 to 5 objects.
RN_C, RN_H, RN_T, EMBED, N = 512, 8, 17, 64, 40


def tiny(**changes) -> dict:
    raw = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        section, _, name = key.partition(".")
        raw[section][name] = value
    return raw


def mb(held_bytes: float, baseline: int) -> int:
    """mem_mb as the module rounds it: baseline + MARGIN x held, up to 100 MB."""
    return int(math.ceil((baseline + MARGIN * held_bytes / MB) / 100) * 100)


def test_decomposition_memory_by_hand():
    """decompose_attnpool streams: a chunk of x, alpha, s and their temporaries, u (H, C, E) twice, the Gram
    matrices (C, H, H), per-image scalars and the top images of the checked pairs and neurons."""
    config = load_config(tiny())
    dec = config.decomposition
    chunk = dec.chunk_size
    held = chunk * (2 * (RN_T * RN_C + RN_H * RN_T) + 5 * RN_H * RN_C + RN_H * EMBED) * FLOAT64
    held += (2 * RN_H * RN_C * EMBED + RN_C * RN_H * RN_H) * FLOAT64 + N * 8 * FLOAT64
    held += 2 * dec.n_checked * dec.pc_top_k * (RN_H + 2) * FLOAT64
    job = {"model": "tiny-rn", "dataset": "tiny-shapes"}
    assert RuleResources(config).memory_mb("decompose_attnpool", job) == mb(held, BASELINE_MB["torch"])


@pytest.mark.parametrize("rule", ["decompose_attnpool", "ablate_components", "decompose_text"])
def test_decomposition_memory_grows_by_per_image_scalars_only(rule):
    """From ImageNet's 50,000 validation images to 500,000 the RN50x16 stages grow by their per-image scalars
    (64 bytes an image), not by the scalars s (N, H, C) they held before streaming (2.4 TB more)."""
    raw = located(yaml.safe_load(PAPER.read_text()), paper_locations(Path("/data")))
    job = {"model": "rn50x16", "dataset": "shapes"}
    memory, held = [], []
    for n_per_count in (10_000, 100_000):
        raw["datasets"]["shapes"]["n_per_count"] = n_per_count
        res = RuleResources(load_config(raw))
        memory.append(res.memory_mb(rule, job))
        held.append(sum(res.estimate(rule, job).host.values()))
    assert memory[0] < 16_000
    assert held[1] - held[0] == pytest.approx(450_000 * 8 * FLOAT64)


def test_plot_rules_take_the_numpy_baseline_and_the_floor():
    res = RuleResources(load_config(tiny()))
    job = {"model": "tiny-vit", "dataset": "tiny-shapes"}
    assert res.memory_mb("plot_selectivity", job) == BASELINE_MB["numpy"]
    assert res.runtime_min("plot_selectivity", job) == resources.FLOOR_MIN


def test_a_retry_asks_for_more():
    res = RuleResources(load_config(tiny()))
    job = {"model": "tiny-rn", "dataset": "tiny-shapes"}
    memory, runtime = res.mem_mb("ablate_components"), res.runtime("ablate_components")
    assert memory(job, 2, 2) == 2 * memory(job, 2, 1) == 2 * res.memory_mb("ablate_components", job)
    assert runtime(job, 3) == 3 * runtime(job, 1)


def test_an_unknown_rule_is_refused_when_declared():
    with pytest.raises(KeyError):
        RuleResources(load_config(tiny())).mem_mb("no_such_rule")


def test_device_memory_counts_on_the_cpu_only():
    """A batch of patched runs lives on the GPU under CUDA: the host request drops by its size."""
    job = {"model": "tiny-vit", "dataset": "tiny-shapes-pairs"}
    cpu, cuda = (RuleResources(load_config(tiny(**{"extraction.device": d}))) for d in ("cpu", "cuda"))
    estimate = cpu.estimate("patch_components", job)
    device = sum(estimate.device.values())
    host = sum(estimate.host.values())
    assert device > 0
    assert cpu.memory_mb("patch_components", job) == mb(host + device, BASELINE_MB["torch"])
    assert cuda.memory_mb("patch_components", job) == mb(host, BASELINE_MB["torch"] + BASELINE_MB["cuda"])


def test_tracing_time_follows_the_pairs():
    """patch_components runs n_pairs x sets passes: doubling the pairs doubles the time above the floor."""
    job = {"model": "tiny-vit", "dataset": "tiny-shapes-pairs"}
    few, many = (
        RuleResources(load_config(tiny(**{"patching.n_pairs": n}))).estimate("patch_components", job).flops
        for n in (1, 2)
    )
    assert many == pytest.approx(2 * few)


def test_tracing_on_a_captions_dataset_holds_its_pairs_images_only():
    """On a captions dataset patch_components preprocesses the images of its pairs: n_pairs, at most n_images."""
    raw = tiny(**{"patching.corruptions": ["zero", "noise"]})
    raw["datasets"]["captioned"] = {"kind": "captions", "path": "captions.tsv", "words": ["dog", "cat"]}
    raw["patching"]["datasets"] = ["captioned"]
    raw["patching"]["concepts"] = {"datasets": []}
    job = {"model": "tiny-vit", "dataset": "captioned"}

    def pixels(n_pairs, n_images=None):
        raw["patching"]["n_pairs"], raw["datasets"]["captioned"]["n_images"] = n_pairs, n_images
        return RuleResources(load_config(raw)).estimate("patch_components", job).host["the pairs' pixels, twice"]

    assert pixels(2) == 2 * pixels(1) > 0
    assert pixels(4, n_images=2) == pixels(2)


def test_miclip_sae_evaluation_holds_a_block_of_the_heldout_latents_and_shapes_codes_only():
    """evaluate_miclip of an SAE unit set spills its (held-out images, n) latents to disk and holds a buffer of their
    rows and a block of their units; the top-k codes of every held-out image only on Shapes, where Network
    Dissection reads their maps (clipmech.miclip.evaluation.sae_set)."""
    raw = located(yaml.safe_load(PAPER.read_text()), paper_locations(Path("/data")))
    config = load_config(raw)
    res = RuleResources(config)
    site = "visual.blocks.10.hook_resid_pre"
    term = "SAE, top-k codes, image-level latents"

    def held(dataset):
        return res.estimate("evaluate_miclip", {"model": "vit-b-16", "dataset": dataset, "site": site, "kind": "sae"})

    n_latents, k, d = config.sae.n_latents, config.sae.k, 768
    weights = 4.0 * d * n_latents * 4
    buffer = 2.0 * resources.MICLIP_SPILL_IMAGES * n_latents * 4

    def block(heldout):
        return 4.0 * heldout * resources.MICLIP_UNIT_CHUNK * FLOAT64

    heldout = round(config.miclip.holdout * res.images("imagenet-train"))
    assert held("imagenet-train").host[term] == weights + buffer + block(heldout)
    # 1.5 GB, a thirtieth of the 52 GB of the (N, n) float64 latents held twice before they were spilled
    assert held("imagenet-train").host[term] < 2.0 * heldout * n_latents * FLOAT64 / 30
    heldout, positions = round(config.miclip.holdout * res.images("shapes")), 197
    codes = heldout * positions * k * 16
    assert held("shapes").host[term] == weights + codes + buffer + block(heldout)


def test_natural_datasets_add_a_decoder_per_thread():
    raw = tiny()
    raw["datasets"]["photos"] = {"kind": "imagefolder", "root": "photos", "n_images": 10}
    raw["zeroshot"] = {"models": ["tiny-vit"], "datasets": ["photos"], "templates": ["a photo of a {}."]}
    res = RuleResources(load_config(raw))
    job = {"model": "tiny-vit", "dataset": "photos"}
    assert res.memory_mb("zero_shot", job, 3) - res.memory_mb("zero_shot", job, 1) == 2 * resources.DECODER_MB


@pytest.mark.parametrize(
    ("architecture", "params"),
    # open_clip's parameter counts (its docs' model profile table; RN50x16 291M, ViT-L-14 428M).
    [("RN50", 102.0e6), ("RN50x16", 291.0e6), ("ViT-B-32", 151.3e6), ("ViT-L-14", 427.6e6)],
)
def test_parameters_from_the_config_match_open_clip(architecture, params):
    assert resources.model_shape(architecture).params == pytest.approx(params, rel=0.02)


def test_the_tiny_models_shapes_match_the_built_models(vit, rn):
    """Parameters and widths read from the configs equal those of the built tiny models (not within 2 %)."""
    for architecture, model in (("clipmech-vit-tiny", vit), ("clipmech-rn-tiny", rn)):
        shape = resources.model_shape(architecture)
        built = sum(p.numel() for p in model.parameters())
        assert shape.params == pytest.approx(built, rel=0.05), architecture
    assert resources.model_shape("clipmech-rn-tiny").visual.width == RN_C
    assert resources.model_shape("clipmech-rn-tiny").visual.n_heads == RN_H


def declared():
    """(file, rule, resources block) of every rule in workflow/rules/."""
    rule = re.compile(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", re.DOTALL | re.MULTILINE)
    block = re.compile(r"^    resources:\n((?:        .*\n)+)", re.MULTILINE)
    return [
        (path.name, match[1], block.search(match[2])[1])
        for path in sorted((ROOT / "workflow" / "rules").glob("*.smk"))
        for match in rule.finditer(path.read_text())
    ]


@pytest.mark.parametrize(("file", "rule", "block"), declared(), ids=[rule for _, rule, _ in declared()])
def test_every_rule_declares_its_own_estimate(file, rule, block):
    assert f'mem_mb=RESOURCES.mem_mb("{rule}"),' in block, f"{file}: {rule}"
    assert f'runtime=RESOURCES.runtime("{rule}"),' in block, f"{file}: {rule}"
    assert rule in resources.ESTIMATES


def test_every_estimate_is_of_a_rule():
    assert set(resources.ESTIMATES) == {rule for _, rule, _ in declared()}


def test_the_plan_lists_the_paper_jobs():
    """config/paper.yaml: the RN50x16 decomposition and the SAE jobs are planned, each with its memory."""
    raw = located(yaml.safe_load(PAPER.read_text()), paper_locations(Path("/data")))
    raw["patching"]["models"] = ["vit-b-32"]  # SigLIP's timm tower is sized by building it (slow)
    jobs = resources.plan_jobs(load_config(raw))
    rules = {job.rule for job in jobs}
    assert {"decompose_attnpool", "train_sae", "patch_components", "extract_activations"} <= rules
    text = resources.format_jobs(jobs, 1)
    assert "largest memory:" in text and "decompose_attnpool" in text
    assert all(job.mem_mb >= BASELINE_MB["numpy"] and job.runtime >= resources.FLOOR_MIN for job in jobs)


def test_the_chunk_constants_are_the_stages_own():
    """resources keeps copies of stage constants (the Snakefile imports it; the stages' modules import torch)."""
    import inspect

    from clipmech.analyses.concepts import BLOCK_VALUES
    from clipmech.decomposition.components import LEVELS
    from clipmech.miclip.baselines import netdissect_iou
    from clipmech.miclip.evaluation import PIXEL_CHUNK, SPILL_IMAGES
    from clipmech.miclip.units import UNIT_CHUNK

    assert (resources.MICLIP_PIXEL_CHUNK, resources.AUROC_BLOCK_VALUES) == (PIXEL_CHUNK, BLOCK_VALUES)
    assert (resources.MICLIP_SPILL_IMAGES, resources.MICLIP_UNIT_CHUNK) == (SPILL_IMAGES, UNIT_CHUNK)
    assert resources._DECOMPOSITION_LEVELS == LEVELS
    defaults = {name: p.default for name, p in inspect.signature(netdissect_iou).parameters.items()}
    assert (resources.NETDISSECT_UNITS, resources.NETDISSECT_IMAGES, resources.NETDISSECT_CAP) == (
        defaults["unit_chunk"],
        defaults["image_chunk"],
        defaults["cap"],
    )


def test_the_snakefiles_imports_leave_torch_out():
    """Every Snakemake invocation (and every SLURM job's) parses the Snakefile: importing torch and open_clip there
    cost seconds each time."""
    code = "import sys, clipmech.config, clipmech.resources, clipmech.storage; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
