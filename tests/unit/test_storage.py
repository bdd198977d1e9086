"""The storage plan (clipmech.storage): store sizes from the config alone, the budget, ``python -m clipmech plan``.

The tiny config's stores are sized by hand here from the tiny models' open_clip configs
(src/clipmech/models/model_configs); tests/workflow/test_workflow.py compares the plan with the files the
tiny run writes.
"""

from __future__ import annotations

import copy

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from snakemake_cli import PAPER, TINY

from clipmech import storage
from clipmech.__main__ import main
from clipmech.config import load_config

N = 40  # tiny-shapes: 8 images per object count, 1 to 5 objects
# tiny-vit: 2 blocks of width 64, a class token and (64 / 8)^2 patches, embeddings of 64.
VIT_T, VIT_D, VIT_L, EMBED = 65, 64, 2, 64
# tiny-rn: width 16 -> 512 channels, 8 heads of 64, (128 / 32)^2 + 1 tokens.
RN_C, RN_H, RN_T = 512, 8, 17
# The sites of tests/config/tiny.yaml's MiCLIP unit sets on tiny-vit.
MICLIP_VIT_HOOKS = ("hook_mlp_out", "hook_resid_pre")


def tiny(**changes) -> dict:
    raw = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        raw[key] = value
    return raw


def by_path(stores):
    return {store.path: store for store in stores}


def test_the_tiny_stores_sized_by_hand():
    stores = by_path(storage.storage_plan(load_config(tiny())))
    assert set(stores) == {
        "results/activations/tiny-vit/tiny-shapes.zarr",
        "results/attnpool/tiny-rn/tiny-shapes.zarr",
        "results/attnpool/tiny-rn/tiny-shapes-shift.zarr",
        *(f"results/miclip/tiny-vit/tiny-shapes/visual.blocks.1.{hook}/acts.zarr" for hook in MICLIP_VIT_HOOKS),
        "results/miclip/tiny-rn/tiny-shapes/visual.blocks.3.hook_resid_post/acts.zarr",
    }
    for hook in MICLIP_VIT_HOOKS:  # the probe's float32 (N, T, D)
        probe = stores[f"results/miclip/tiny-vit/tiny-shapes/visual.blocks.1.{hook}/acts.zarr"]
        assert probe.kind == "miclip" and probe.arrays == {"site_acts": N * VIT_T * VIT_D * 4}
    # tiny-rn's last stage: (N, C, h, w) with C = 16 x 2^3 x 4 and h = w = 128 / (4 x 2^3).
    probe = stores["results/miclip/tiny-rn/tiny-shapes/visual.blocks.3.hook_resid_post/acts.zarr"]
    assert probe.arrays == {"site_acts": N * RN_C * 4 * 4 * 4}
    vit = stores["results/activations/tiny-vit/tiny-shapes.zarr"]
    assert vit.n_images == N and vit.arrays == {
        "mean": N * VIT_L * VIT_D * 4,
        "max": N * VIT_L * VIT_D * 4,
        "cls": N * VIT_L * VIT_D * 4,
        "tokens": N * VIT_L * VIT_T * VIT_D * 2,
        "embedding": N * EMBED * 4,
        "visual.blocks.1.hook_resid_pre": N * VIT_T * VIT_D * 2,
    }
    rn = stores["results/attnpool/tiny-rn/tiny-shapes.zarr"]
    parameters = (RN_T * RN_C + 3 * (RN_C * RN_C + RN_C) + EMBED * RN_C + EMBED) * 4
    assert rn.arrays == {
        "x": N * RN_T * RN_C * 4,
        "alpha": N * RN_H * RN_T * 4,
        "y": N * EMBED * 4,
        "parameters": parameters,
    }
    assert stores["results/attnpool/tiny-rn/tiny-shapes-shift.zarr"].n_images == 8  # 4 splits of 2


def test_the_keys_that_shrink_a_store_shrink_its_estimate():
    base = by_path(storage.storage_plan(load_config(tiny())))["results/activations/tiny-vit/tiny-shapes.zarr"]
    raw = tiny()
    raw["extraction"] = {**raw["extraction"], "save_tokens": False, "reductions": ["mean"], "layers": [1]}
    raw["sae"] = {**raw["sae"], "sites": {"tiny-vit": []}}  # (its site needs the tokens)
    raw["miclip"] = {**raw["miclip"], "units": {}}
    small = by_path(storage.storage_plan(load_config(raw)))["results/activations/tiny-vit/tiny-shapes.zarr"]
    assert small.arrays == {
        "mean": N * 1 * VIT_D * 4,
        "embedding": N * EMBED * 4,
        "visual.blocks.1.hook_resid_pre": N * VIT_T * VIT_D * 2,
    }
    assert small.nbytes < base.nbytes / 2


def test_text_tower_sites_take_the_context_length():
    raw = tiny()
    raw["extraction"] = {**raw["extraction"], "sites": [*raw["extraction"]["sites"], "text.blocks.*.hook_resid_post"]}
    vit = by_path(storage.storage_plan(load_config(raw)))["results/activations/tiny-vit/tiny-shapes.zarr"]
    assert vit.arrays["text.blocks.0.hook_resid_post"] == vit.arrays["text.blocks.1.hook_resid_post"] == N * 48 * 64 * 2


def test_natural_dataset_sizes(tmp_path):
    raw = tiny()
    raw["datasets"] = {
        **raw["datasets"],
        "imnet": {"kind": "imagenet", "root": str(tmp_path / "nowhere")},
        "sub": {"kind": "imagenet", "root": str(tmp_path / "nowhere"), "n_images": 7},
        "folder": {"kind": "imagefolder", "root": str(tmp_path / "folder")},
        "gone": {"kind": "imagefolder", "root": str(tmp_path / "gone")},
    }
    raw["zeroshot"] = {**raw.get("zeroshot", {}), "templates": ["a photo of a {}."]}
    config = load_config(raw)
    assert storage.dataset_images(config, "imnet", tmp_path) == 50_000  # the split's size, nothing listed
    assert storage.dataset_images(config, "sub", tmp_path) == 7
    for label in ("a", "b"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "folder" / label / f"{i}.png").write_bytes(b"")  # listed, not read
    assert storage.dataset_images(config, "folder", tmp_path) == 6
    assert storage.dataset_images(config, "gone", tmp_path) is None
    # An indexed dataset: its manifest's rows.
    manifest = tmp_path / "results/datasets/gone/data/manifest.parquet"
    manifest.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(pd.DataFrame({"index": range(11)})), manifest)
    assert storage.dataset_images(config, "gone", tmp_path) == 11


def test_over_budget_names_the_largest_stores_and_the_keys():
    raw = tiny(storage={"budget_gb": 0.005})
    config = load_config(raw)
    stores = storage.storage_plan(config)
    storage.check_budget(stores, None)
    storage.check_budget(stores, 0.013)  # 12.1 MB
    with pytest.raises(ValueError) as error:
        storage.check_budget(stores, config.storage.budget_gb)
    message = str(error.value)
    assert "over storage.budget_gb = 0.005" in message
    assert "results/attnpool/tiny-rn/tiny-shapes.zarr (4.74 MB)" in message
    assert all(key in message for key in ("extraction.sites", "extraction.save_tokens", "n_images", "miclip.units"))


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="storage.budget_gb"):
        load_config(tiny(storage={"budget_gb": 0}))


def test_the_plan_command(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.read_text())
    over = tmp_path / "budget.yaml"
    over.write_text(yaml.safe_dump({"storage": {"budget_gb": 0.001}}))
    assert main(["plan", "--configfile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "results/activations/tiny-vit/tiny-shapes.zarr" in out and "total: 12.1 MB in 6 stores" in out
    # Files merge as Snakemake merges them: the second one's budget applies.
    assert main(["plan", "--configfile", str(path), str(over)]) == 1
    assert "over storage.budget_gb = 0.001" in capsys.readouterr().err
    # A config error (here config/paper.yaml's dataset locations, not set yet) is the message alone, exit 2.
    assert main(["plan", "--configfile", str(PAPER)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: the run uses natural-image datasets that are not located yet")
    assert "datasets.imagenet-val.root" in err and "Traceback" not in err


def test_human_sizes():
    assert [storage.human(n) for n in (999, 1e6, 2.5e9, 3e12)] == ["0.999 kB", "1 MB", "2.5 GB", "3 TB"]


def test_an_unknown_architecture_is_not_estimated():
    raw = copy.deepcopy(tiny())
    raw["models"]["tiny-vit"] = {"architecture": "hf-hub:someone/some-clip", "pretrained": None}
    stores = by_path(storage.storage_plan(load_config(raw)))
    vit = stores["results/activations/tiny-vit/tiny-shapes.zarr"]
    assert vit.nbytes is None and "known only when it loads" in vit.note
    assert "(3 not estimated)" in storage.format_plan(list(stores.values()))  # and its 2 MiCLIP probes
