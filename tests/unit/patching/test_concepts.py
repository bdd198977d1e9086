"""Concept selectivity (clipmech.patching.concepts; methods.md Sec. 8): AUROC against scikit-learn, presence,
caption tokens, planted units in both towers, counts, and the concept_auroc stage."""

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from clipmech.analyses.concepts import auroc
from clipmech.data import shapes
from clipmech.hooks.sites import hooked
from clipmech.models.loading import ModelSpec  # (also registers clipmech's model configs with open_clip)
from clipmech.patching import concepts


def test_real_token_mask():
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    tokens_NT = tokenizer(["a red square", "a blue circle at the top left"])
    mask_NT = concepts.real_token_mask(
        tokens_NT, *concepts.text_pooling(open_clip.create_model("clipmech-vit-tiny"), tokenizer)
    )
    # start token, the words, end token
    assert mask_NT.sum(dim=1).tolist() == [5, 9] and mask_NT[:, 0].all() and not mask_NT[:, -1].any()
    tokens = torch.tensor([[5, 7, 2, 0, 0], [5, 2, 0, 0, 0]])
    assert concepts.real_token_mask(tokens, "eos", eos_id=2).sum(dim=1).tolist() == [3, 2]
    assert concepts.real_token_mask(tokens, "last", pad_id=0).sum(dim=1).tolist() == [3, 2]
    with pytest.raises(ValueError, match="pad_id"):
        concepts.real_token_mask(tokens, "last")
    with pytest.raises(ValueError, match="supported: argmax, eos, last"):
        concepts.real_token_mask(tokens, "first")


def test_unit_sites(vit, rn):
    assert concepts.unit_sites(vit, "visual") == ["visual.blocks.0.mlp.hook_post", "visual.blocks.1.mlp.hook_post"]
    assert concepts.unit_sites(vit, "text") == ["text.blocks.0.mlp.hook_post", "text.blocks.1.mlp.hook_post"]
    sites = concepts.unit_sites(rn, "visual")
    assert sites[-1] == "visual.attnpool.hook_x" and sites[3] == "visual.blocks.3.hook_resid_post"
    assert [concepts.site_layer(rn, site) for site in sites] == [0, 1, 2, 3, 4]


def _planted(present_N: np.ndarray, unit: int, hot: tuple, cold: float):
    """An edit that sets channel ``unit`` to ``cold`` everywhere and to the presence of the current images at ``hot``
    (the index after the batch and channel axes), counting images through the batches."""
    state = {"offset": 0}

    def edit(act):
        n = act.shape[0]
        new = act.clone()
        values = torch.as_tensor(present_N[state["offset"] : state["offset"] + n], dtype=act.dtype)
        state["offset"] += n
        if act.ndim == 4:
            new[:, unit] = cold
            new[(slice(None), unit, *hot)] = values
        else:
            new[:, :, unit] = cold
            new[:, hot[0], unit] = values
        return new

    return edit


def _planted_patches(present_N: np.ndarray, unit: int):
    """An edit that sets channel ``unit`` to the presence of the current images on every patch token (a ResNet
    stage: every position) and, on a ViT, its class token to 5 x the absence, which the image-level activation
    (the mean over the patch tokens) must not see."""
    state = {"offset": 0}

    def edit(act):
        n = act.shape[0]
        new = act.clone()
        values = torch.as_tensor(present_N[state["offset"] : state["offset"] + n], dtype=act.dtype)
        state["offset"] += n
        if act.ndim == 4:
            new[:, unit] = values[:, None, None]
        else:
            new[:, 1:, unit] = values[:, None]
            new[:, 0, unit] = 5.0 * (1 - values)
        return new

    return edit


@pytest.mark.parametrize(
    "model_name, site",
    [("vit", "visual.blocks.1.mlp.hook_post"), ("rn", "visual.blocks.0.hook_resid_post")],
)
def test_planted_vision_unit_is_read_over_patches_only(vit, rn, model_name, site):
    model = {"vit": vit, "rn": rn}[model_name]
    rng = np.random.default_rng(1)
    present_NF = rng.random((10, 3)) < 0.5
    present_NF[0, 1], present_NF[1, 1] = True, False
    size = model.visual.image_size
    pixels = torch.randn(10, 3, *((size,) * 2 if isinstance(size, int) else size), dtype=torch.float64)
    with hooked(model, edit={site: _planted_patches(present_NF[:, 1], 7)}):
        acts = concepts.image_unit_activations(model, pixels, [site], batch_size=4)
    np.testing.assert_allclose(acts[site][:, 7], present_NF[:, 1], atol=1e-6)
    auroc_UF = auroc(acts[site], present_NF)
    assert auroc_UF[7, 1] == 1.0


def test_image_level_activation_is_the_mean_over_patches(vit):
    """One definition for a neuron (methods.md Sec. 9.3): the concept AUROC reads the store's ``mean`` reduction."""
    from clipmech.stores.activation_extraction import reduce_tokens

    site = "visual.blocks.0.mlp.hook_post"
    size = vit.visual.image_size
    pixels = torch.randn(3, 3, *((size,) * 2 if isinstance(size, int) else size), dtype=torch.float64)
    acts = concepts.image_unit_activations(vit, pixels, [site], batch_size=2)[site]
    with torch.inference_mode(), hooked(vit, capture=[site]) as cache:
        vit.encode_image(pixels)
        expected = reduce_tokens(cache[site][:, None], "mean", n_prefix_tokens=1)[:, 0]
    np.testing.assert_allclose(acts, expected.numpy(), rtol=1e-6)


def test_spilled_activations_are_the_in_memory_ones(vit, tmp_path):
    sites = ["visual.blocks.0.mlp.hook_post", "visual.blocks.1.mlp.hook_post"]
    size = vit.visual.image_size
    pixels = torch.randn(5, 3, *((size,) * 2 if isinstance(size, int) else size), dtype=torch.float64)
    held = concepts.image_unit_activations(vit, pixels, sites, batch_size=2)
    spilled = concepts.streamed_image_unit_activations(
        vit, (pixels[i : i + 2] for i in range(0, 5, 2)), sites, spill=tmp_path / "visual"
    )
    for site in sites:
        assert spilled[site].shape == held[site].shape
        np.testing.assert_array_equal(spilled[site][:], held[site])
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    texts = ["a red square", "a blue circle", "a red square"]
    codes, distinct = concepts.distinct_texts(texts)
    assert distinct == ["a red square", "a blue circle"] and codes.tolist() == [0, 1, 0]
    site = "text.blocks.0.mlp.hook_post"
    on_disk = concepts.caption_unit_activations(vit, tokenizer, distinct, [site], batch_size=1, spill=tmp_path / "t")
    expanded = concepts.text_unit_activations(vit, tokenizer, texts, [site], batch_size=1)[site]
    np.testing.assert_array_equal(on_disk[site][:][codes], expanded)


def test_planted_text_unit_ignores_padding(vit):
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    captions = ["a red square", "a blue circle", "a red circle at the top left", "a green shape", "a red hexagon"]
    present_N = np.array([1, 0, 1, 0, 1], dtype=bool)
    site = "text.blocks.0.mlp.hook_post"
    plant = _planted(present_N, 4, (1,), -1.0)

    def plant_with_hot_padding(act):
        new = plant(act)
        new[:, -1, 4] = 5.0  # the last position is padding in every caption
        return new

    with hooked(vit, edit={site: plant_with_hot_padding}):
        acts = concepts.caption_unit_activations(vit, tokenizer, captions, [site], batch_size=2)
    np.testing.assert_array_equal(acts[site][:, 4], present_N)
    assert auroc(acts[site], present_N[:, None])[4, 0] == 1.0


def test_selective_counts_and_modality_invariant():
    def rows(tower_name, site, auroc_UF):
        present_NF = np.zeros((4, len(shapes.FEATURES)), dtype=bool)
        present_NF[:2] = True
        return concepts.auroc_table(tower_name, site, 0, auroc_UF, present_NF)

    red, blue, green = (shapes.FEATURES.index(c) for c in ("red", "blue", "green"))
    vision = np.full((3, len(shapes.FEATURES)), 0.5)
    vision[0, red], vision[1, red], vision[2, blue] = 0.95, 0.9, 0.99
    vision[:, green] = np.nan
    text = np.full((2, len(shapes.FEATURES)), 0.5)
    text[1, red], text[0, blue] = 0.91, 0.89
    table = pd.concat(
        [rows("visual", "visual.blocks.0.mlp.hook_post", vision), rows("text", "text.blocks.0.mlp.hook_post", text)]
    )
    counts = concepts.selective_counts(table, 0.9).set_index(["tower", "concept"])
    assert counts.loc[("visual", "red"), "n_selective"] == 2 and counts.loc[("visual", "red"), "n_units"] == 3
    assert counts.loc[("visual", "green"), "n_selective"] == 0 and counts.loc[("text", "blue"), "n_selective"] == 0
    assert concepts.modality_invariant(counts.reset_index()) == ["red"]
    assert counts["modality_invariant"].sum() == 2  # the visual and the text row of red


@pytest.mark.parametrize("architecture", ["clipmech-vit-tiny", "clipmech-rn-tiny"])
def test_concept_auroc_stage(tiny_dataset, tmp_path, architecture):
    from clipmech.stages.concept_auroc import concept_auroc

    out = {key: str(tmp_path / name) for key, name in (("auroc", "auroc.tsv"), ("summary", "summary.tsv"))}
    concept_auroc(
        model=ModelSpec(name="random", architecture=architecture, pretrained=None),
        dataset_dir=str(tiny_dataset),
        out=out,
        concepts={"batch_size": 4, "threshold": 0.9},
        device="cpu",
        threads=1,
    )
    table = pd.read_csv(out["auroc"], sep="\t")
    assert tuple(table.columns) == concepts.AUROC_COLUMNS
    n_vision = {"clipmech-vit-tiny": 2 * 256, "clipmech-rn-tiny": 64 + 128 + 256 + 512 + 512}[architecture]
    assert (table["tower"] == "visual").sum() == n_vision * 16 and (table["tower"] == "text").sum() == 2 * 256 * 16
    defined = table["auroc"].notna()
    assert table.loc[defined, "auroc"].between(0, 1).all()
    assert (defined == ((table["n_pos"] > 0) & (table["n_neg"] > 0))).all()
    assert ((table["n_pos"] + table["n_neg"]) == 10).all()
    summary = pd.read_csv(out["summary"], sep="\t")
    assert list(summary.columns) == [
        "tower",
        "site",
        "layer",
        "concept",
        "concept_type",
        "n_units",
        "n_selective",
        "n_selective_tower",
        "modality_invariant",
    ]
    expected = table.assign(s=table["auroc"] >= 0.9).groupby(["tower", "site", "concept"])["s"].sum()
    np.testing.assert_array_equal(
        summary.set_index(["tower", "site", "concept"])["n_selective"].loc[expected.index], expected
    )


def test_auroc_figure_counts_the_units_at_the_threshold(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from clipmech.figures import patching as patching_figures

    figures = []
    monkeypatch.setattr(patching_figures, "save_figure", lambda fig, path: (figures.append(fig), fig.savefig(path)))
    present_NF = np.zeros((4, len(shapes.FEATURES)), dtype=bool)
    present_NF[:2] = True
    stage = np.full((3, len(shapes.FEATURES)), 0.5)
    stage[0, 0], stage[1, 5], stage[2, 9] = 0.9, 0.95, 0.89  # best AUROC 0.9, 0.95, 0.89: two at the threshold
    pool = np.full((2, len(shapes.FEATURES)), 0.6)
    pool[1] = np.nan  # a unit without a defined AUROC is left out
    text = np.full((1, len(shapes.FEATURES)), 0.99)
    table = pd.concat(
        [
            concepts.auroc_table("visual", "visual.blocks.3.hook_resid_post", 3, stage, present_NF),
            concepts.auroc_table("visual", "visual.attnpool.hook_x", 4, pool, present_NF),
            concepts.auroc_table("text", "text.blocks.0.mlp.hook_post", 0, text, present_NF),
        ]
    )
    patching_figures.auroc_by_layer(table, 0.9, "test", tmp_path / "auroc.png")
    vision, language = figures[0].axes
    assert [t.get_text() for t in vision.texts] == ["2", "0"] and [t.get_text() for t in language.texts] == ["1"]
    assert [t.get_text() for t in vision.get_xticklabels()] == ["3", "pool"]
    assert vision.get_title() == "vision tower: 4 units"
    plt.close(figures[0])


def test_concept_auroc_at_bf16_stays_near_fp32(tiny_dataset, tmp_path):
    """extraction.precision bf16 runs both towers under autocast: the AUROCs move (bf16 keeps 8 bits, so ties
    and near-ties reorder) but stay close to fp32's; the same table otherwise."""
    from clipmech.stages.concept_auroc import concept_auroc

    tables = {}
    for precision in ("fp32", "bf16"):
        out = {key: str(tmp_path / f"{precision}-{key}.tsv") for key in ("auroc", "summary")}
        concept_auroc(
            model=ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None),
            dataset_dir=str(tiny_dataset),
            out=out,
            concepts={"batch_size": 4, "threshold": 0.9},
            device="cpu",
            threads=1,
            precision=precision,
        )
        tables[precision] = pd.read_csv(out["auroc"], sep="\t")
    fp32, bf16 = tables["fp32"], tables["bf16"]
    keys = ["tower", "site", "layer", "unit", "concept", "n_pos", "n_neg"]
    pd.testing.assert_frame_equal(fp32[keys], bf16[keys])
    moved = (fp32["auroc"] - bf16["auroc"]).abs()
    assert moved.max() > 0  # autocast did run
    assert moved.mean() < 0.05, moved.describe()
