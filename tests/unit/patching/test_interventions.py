"""Concept-unit interventions (clipmech.patching.interventions; methods.md Sec. 8, causal-tracing paper Sec. 4.3):
x1 is the identity, x0 is zero-ablation by a second route, unit choice, bootstrap, and the intervene_concepts stage."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from toys import no_hooks

from clipmech.analyses.concepts import image_presence
from clipmech.data import shapes
from clipmech.data.datasets import load
from clipmech.hooks.sites import hooked
from clipmech.models.loading import ModelSpec  # (also registers clipmech's model configs with open_clip)
from clipmech.patching import concepts, interventions


def _pixels(model, n=6, seed=2):
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _texts(n_prompts=4, width=64, seed=3):
    text_PE = np.random.default_rng(seed).standard_normal((n_prompts, width))
    return text_PE / np.linalg.norm(text_PE, axis=1, keepdims=True)


VIT_UNITS = {"visual.blocks.0.mlp.hook_post": np.array([3, 7, 11]), "visual.blocks.1.mlp.hook_post": np.array([0, 255])}
RN_STAGE_UNITS = {"visual.blocks.0.hook_resid_post": np.array([1, 5]), "visual.blocks.3.hook_resid_post": np.array([9])}


@pytest.mark.parametrize("model_name, units", [("vit", VIT_UNITS), ("rn", RN_STAGE_UNITS)])
def test_scale_one_changes_nothing(vit, rn, model_name, units):
    model = {"vit": vit, "rn": rn}[model_name]
    changes = interventions.cosine_changes(model, _pixels(model), _texts(), units, [1.0, 0.0], batch_size=4)
    assert set(changes) == {1.0, 0.0} and changes[1.0].shape == (6, 4)
    assert np.all(changes[1.0] == 0.0)
    assert np.abs(changes[0.0]).max() > 1e-6  # the same units at x0 do change the embedding
    assert no_hooks(model)


def test_scale_one_on_attnpool_units_changes_only_by_rounding(rn):
    units = {"visual.attnpool.hook_x": np.array([2, 30])}
    changes = interventions.cosine_changes(rn, _pixels(rn), _texts(), units, [1.0], batch_size=4)
    assert np.abs(changes[1.0]).max() < 1e-12  # float64: the pool recomputed from x


@pytest.mark.parametrize(
    "model_name, site, units",
    [
        ("vit", "visual.blocks.0.mlp.hook_post", [3, 7, 11]),
        ("rn", "visual.blocks.2.hook_resid_post", [0, 4, 100]),
        ("rn", "visual.attnpool.hook_x", [2, 30, 511]),
    ],
)
def test_scale_zero_is_zero_ablation_by_replacement(vit, rn, model_name, site, units):
    model = {"vit": vit, "rn": rn}[model_name]
    pixels = _pixels(model)
    with torch.inference_mode(), hooked(model, capture=[site]) as cache:
        model.encode_image(pixels)
    zeroed = cache[site].clone()
    if zeroed.ndim == 4:
        zeroed[:, units] = 0.0
    else:
        zeroed[..., units] = 0.0
    with torch.inference_mode(), hooked(model, replace={site: zeroed}):
        expected_NE = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
    edit = interventions.scale_edits(model, {site: np.array(units)}, 0.0)
    scaled_NE = interventions.image_embeddings(model, pixels, batch_size=6, edit=edit)
    np.testing.assert_allclose(scaled_NE, expected_NE, rtol=0, atol=1e-12)
    assert np.abs(scaled_NE - interventions.image_embeddings(model, pixels, batch_size=6)).max() > 1e-6


def test_scale_zero_on_two_layers_is_zeroing_the_output_weights(vit):
    pixels = _pixels(vit)
    ablated = copy.deepcopy(vit)
    with torch.no_grad():
        for site, units in VIT_UNITS.items():
            layer = int(site.split(".")[2])
            ablated.visual.transformer.resblocks[layer].mlp.c_proj.weight[:, units] = 0.0
    with torch.inference_mode():
        expected_NE = torch.nn.functional.normalize(ablated.encode_image(pixels), dim=-1).numpy()
    edit = interventions.scale_edits(vit, VIT_UNITS, 0.0)
    np.testing.assert_allclose(
        interventions.image_embeddings(vit, pixels, batch_size=4, edit=edit), expected_NE, rtol=0, atol=1e-12
    )


def test_scale_two_doubles_the_units(vit):
    site = "visual.blocks.1.mlp.hook_post"
    pixels = _pixels(vit, n=2)
    with torch.inference_mode(), hooked(vit, capture=[site]) as cache:
        vit.encode_image(pixels)
    clean = cache[site].clone()
    with torch.inference_mode(), hooked(vit, edit=interventions.scale_edits(vit, {site: np.array([4, 9])}, 2.0)):
        with hooked(vit, capture=[site]) as scaled:
            vit.encode_image(pixels)
    expected = clean.clone()
    expected[..., [4, 9]] *= 2.0
    assert torch.equal(scaled[site], expected)


def test_scale_edits_reject_other_sites_and_indices(vit):
    with pytest.raises(ValueError, match=r"layout \(N, T, D\)"):
        interventions.scale_edits(vit, {"visual.blocks.0.hook_resid_post": np.array([0])}, 0.0)
    edit = interventions.scale_edits(vit, {"visual.blocks.0.mlp.hook_post": np.array([256])}, 0.0)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        interventions.image_embeddings(vit, _pixels(vit, n=1), batch_size=1, edit=edit)
    assert no_hooks(vit)


def test_top_units():
    rows = []
    for tower_name, site, layer, values in (
        ("visual", "visual.blocks.0.mlp.hook_post", 0, [0.7, 0.95, 0.95, np.nan]),
        ("visual", "visual.blocks.1.mlp.hook_post", 1, [0.95, 0.2, 0.99]),
        ("text", "text.blocks.0.mlp.hook_post", 0, [1.0, 1.0]),
    ):
        for unit, value in enumerate(values):
            row = {"tower": tower_name, "site": site, "layer": layer, "unit": unit}
            rows.append({**row, "concept": "red", "auroc": value})
            rows.append({**row, "concept": "blue", "auroc": 1.0})
    table = pd.DataFrame(rows)
    chosen = interventions.top_units(table, "red", 3)  # 0.99, then the 0.95 ties in table order
    assert list(chosen) == ["visual.blocks.0.mlp.hook_post", "visual.blocks.1.mlp.hook_post"]
    assert chosen["visual.blocks.0.mlp.hook_post"].tolist() == [1, 2] and chosen[
        "visual.blocks.1.mlp.hook_post"
    ].tolist() == [2]
    everything = interventions.top_units(table, "red", 50)
    assert sum(len(u) for u in everything.values()) == 6  # the NaN unit and the text units are never chosen
    assert interventions.top_units(table.assign(auroc=np.nan), "red", 5) == {}
    with pytest.raises(ValueError, match="unknown concept 'purple'"):
        interventions.top_units(table, "purple", 5)


LAST_STAGE, POOL_INPUT = "visual.blocks.3.hook_resid_post", "visual.attnpool.hook_x"


def _resnet_table(ranked: list[tuple[str, int, float]]) -> pd.DataFrame:
    """AUROC rows for "red" of the tiny ResNet: (site, unit, auroc), the last stage at layer 3, the pool at 4."""
    layers = {LAST_STAGE: 3, POOL_INPUT: 4, "visual.blocks.2.hook_resid_post": 2}
    return pd.DataFrame(
        [
            {"tower": "visual", "site": site, "layer": layers[site], "unit": unit, "concept": "red", "auroc": auroc}
            for site, unit, auroc in ranked
        ]
    )


def test_top_units_take_a_channel_once():
    """The pool input's channel c is the last stage's channel c: chosen once, at its higher AUROC."""
    table = _resnet_table(
        [
            (LAST_STAGE, 5, 0.97),
            (LAST_STAGE, 7, 0.6),
            (POOL_INPUT, 5, 0.99),
            (POOL_INPUT, 9, 0.95),
            ("visual.blocks.2.hook_resid_post", 5, 0.9),  # another stage's channel 5: another unit
        ]
    )
    chosen = interventions.top_units(table, "red", 3)
    assert {site: units.tolist() for site, units in chosen.items()} == {
        "visual.blocks.2.hook_resid_post": [5],
        POOL_INPUT: [5, 9],
    }
    assert {s: u.tolist() for s, u in interventions.top_units(table, "red", 50).items()} == {
        "visual.blocks.2.hook_resid_post": [5],
        LAST_STAGE: [7],
        POOL_INPUT: [5, 9],
    }


def test_a_channel_selected_at_two_sites_is_scaled_once(rn):
    """Channel 5 tops the concept at the last stage and at the pool input: x2 doubles it once, not twice."""
    table = _resnet_table([(LAST_STAGE, 5, 0.99), (POOL_INPUT, 5, 0.98)])
    pixels = _pixels(rn, n=3)
    present_NF = np.zeros((3, 16), dtype=bool)
    present_NF[:, shapes.FEATURES.index("red")] = True
    text_FE = _texts(16, 64)
    result = interventions.concept_interventions(
        rn, pixels, present_NF, table, text_FE, n_units=2, scales=[2.0], n_resamples=50,
        rng=np.random.default_rng(0), batch_size=3,
    )  # fmt: skip
    assert result["n_units"].tolist() == [1]
    with torch.inference_mode(), hooked(rn, capture=[LAST_STAGE]) as cache:
        rn.encode_image(pixels)
    doubled = cache[LAST_STAGE].clone()
    doubled[:, 5] *= 2.0
    with torch.inference_mode(), hooked(rn, replace={LAST_STAGE: doubled}):
        once_NE = torch.nn.functional.normalize(rn.encode_image(pixels), dim=-1).numpy()
    clean_NE = interventions.image_embeddings(rn, pixels, batch_size=3)
    red = shapes.FEATURES.index("red")
    expected = float(np.mean(once_NE @ text_FE[red] - clean_NE @ text_FE[red]))
    assert result["d_cos_target"].iloc[0] == pytest.approx(expected, rel=0, abs=1e-12)
    assert abs(expected) > 1e-6


def test_bootstrap_mean():
    values = np.random.default_rng(0).standard_normal(40)
    mean, low, high = interventions.bootstrap_mean(values, 500, np.random.default_rng(1))
    assert mean == pytest.approx(values.mean()) and low < mean < high
    assert (mean, low, high) == interventions.bootstrap_mean(values, 500, np.random.default_rng(1))
    assert interventions.bootstrap_mean(np.full(5, 0.25), 100, np.random.default_rng(1)) == (0.25, 0.25, 0.25)
    single = interventions.bootstrap_mean(np.array([0.5]), 100, np.random.default_rng(1))
    assert single[0] == 0.5 and np.isnan(single[1:]).all()


def test_concept_prompts():
    prompts = dict(zip(shapes.FEATURES, interventions.concept_prompts()))
    assert prompts["red"] == "a red shape" and prompts["square"] == "a square"
    assert prompts["top-left"] == "a shape at the top left" and len(prompts) == 16


@pytest.mark.parametrize("architecture", ["clipmech-vit-tiny", "clipmech-rn-tiny"])
def test_intervene_concepts_stage(tiny_dataset, tmp_path, architecture):
    from clipmech.stages.concept_auroc import concept_auroc
    from clipmech.stages.intervene_concepts import intervene_concepts
    from clipmech.stages.plot_concepts import plot_concepts
    from clipmech.stages.plot_interventions import plot_interventions

    model = ModelSpec(name="random", architecture=architecture, pretrained=None)
    auroc_out = {key: str(tmp_path / f"{key}.{ext}") for key, ext in (("auroc", "tsv"), ("summary", "tsv"))}
    concept_auroc(
        model=model,
        dataset_dir=str(tiny_dataset),
        out=auroc_out,
        concepts={"batch_size": 5, "threshold": 0.9},
        device="cpu",
        threads=1,
    )
    out = {"interventions": str(tmp_path / "interventions.tsv")}
    params = {"batch_size": 5, "n_units": 50, "scales": [0.0, 2.0], "n_bootstrap": 200}
    intervene_concepts(
        model=model,
        dataset_dir=str(tiny_dataset),
        auroc=auroc_out["auroc"],
        out=out,
        concepts=params,
        seed=0,
        device="cpu",
        threads=1,
    )
    table = pd.read_csv(out["interventions"], sep="\t")
    assert tuple(table.columns) == interventions.INTERVENTION_COLUMNS
    auroc = pd.read_csv(auroc_out["auroc"], sep="\t")
    defined = auroc.loc[auroc["auroc"].notna(), "concept"].unique()
    assert sorted(table["concept"].unique()) == sorted(defined)  # concepts no (or every) image has are skipped
    assert (
        table.groupby("concept")["scale"].apply(list) == pd.Series([[0.0, 2.0]] * len(defined), index=sorted(defined))
    ).all()
    assert (table["n_units"] == 50).all()
    n_pos = auroc[auroc["tower"] == "visual"].groupby("concept")["n_pos"].first()
    np.testing.assert_array_equal(table["n_images"], n_pos.loc[table["concept"]].to_numpy())
    for column in ("d_cos_target", "d_cos_unrelated"):
        multi = table["n_images"] >= 2
        assert (table.loc[multi, f"{column}_low"] <= table.loc[multi, column] + 1e-9).all()
        assert (table.loc[multi, column] <= table.loc[multi, f"{column}_high"] + 1e-9).all()
    assert table[["d_cos_target", "d_cos_unrelated"]].abs().max().max() > 0
    figures = {"auroc_figure": str(tmp_path / "auroc.png"), "interventions_figure": str(tmp_path / "interventions.png")}
    plot_concepts(auroc=auroc_out["auroc"], out=figures, threshold=0.9, label="test")
    plot_interventions(interventions=out["interventions"], out=figures, n_units=50, label="test")
    for figure in figures.values():
        assert Path(figure).read_bytes()[:4] == b"\x89PNG"
    repeat = dict(out, interventions=str(tmp_path / "repeat.tsv"))
    intervene_concepts(
        model=model,
        dataset_dir=str(tiny_dataset),
        auroc=auroc_out["auroc"],
        out=repeat,
        concepts=params,
        seed=0,
        device="cpu",
        threads=1,
    )
    assert (tmp_path / "repeat.tsv").read_bytes() == (tmp_path / "interventions.tsv").read_bytes()


def test_intervene_concepts_rejects_an_auroc_table_of_other_images(tiny_dataset, tmp_path):
    from clipmech.stages.intervene_concepts import intervene_concepts

    present_NF = image_presence(load(tiny_dataset).objects, 10)
    table = concepts.auroc_table("visual", "visual.blocks.0.mlp.hook_post", 0, np.full((2, 16), 0.5), present_NF[:9])
    table.to_csv(tmp_path / "auroc.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="computed on other images"):
        intervene_concepts(
            model=ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None),
            dataset_dir=str(tiny_dataset),
            auroc=str(tmp_path / "auroc.tsv"),
            out={},
            concepts={"batch_size": 5, "n_units": 50, "scales": [0.0], "n_bootstrap": 10},
            seed=0,
            device="cpu",
            threads=1,
        )
