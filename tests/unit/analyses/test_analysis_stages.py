"""Unit tests of the helpers of the superposition and Grad-CAM stages."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipmech.analyses.gradcam import pointing_row, summarise
from clipmech.analyses.selectivity import read_affinities, unit_table, write
from clipmech.analyses.superposition import superposition_scores
from clipmech.data.shapes import FEATURES


def test_read_affinities_undoes_the_tsv_rounding(tmp_path):
    rng = np.random.default_rng(0)
    affinity_UF = rng.dirichlet(np.full(len(FEATURES), 0.5), size=40)
    entropy_U = -(affinity_UF * np.log(affinity_UF)).sum(axis=1)
    table = unit_table(entropy_U, affinity_UF, np.zeros(40, int), np.arange(40), np.zeros(40))
    paths = [tmp_path / name for name in ("units.tsv", "topk.tsv", "null.tsv")]
    write(table, pd.DataFrame(), np.zeros(3), *paths)
    raw = pd.read_csv(paths[0], sep="\t")[[f"a_{f}" for f in FEATURES]].to_numpy()
    assert np.abs(raw.sum(axis=1) - 1).max() > 1e-7  # 6 significant digits: rows are off by rounding
    read = read_affinities(paths[0])
    np.testing.assert_allclose(read.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(read, table[[f"a_{f}" for f in FEATURES]].to_numpy(), atol=1e-5)
    assert superposition_scores(read, [("red", "blue")], n_units=10).shape[0] == 1


MASK = np.array(
    [
        [1, 1, 0, 2, 2],
        [1, 1, 0, 2, 2],
        [0, 0, 0, 0, 0],
        [3, 3, 0, 0, 0],
    ],
    dtype=np.uint8,
)


def test_pointing_row():
    heat = np.zeros(MASK.shape)
    heat[0, 0], heat[0, 3], heat[3, 0], heat[2, 2] = 3.0, 2.0, 4.0, 1.0
    row = pointing_row(heat, MASK, target=1, lure=2)
    assert row["target"] == pytest.approx(0.3) and row["lure"] == pytest.approx(0.2)
    assert row["other"] == pytest.approx(0.4) and row["background"] == pytest.approx(0.1)
    assert row["total_energy"] == pytest.approx(10.0)
    assert row["hit"] == 0.0  # object 3 holds more energy than the target
    assert pointing_row(heat, MASK, target=3, lure=2)["hit"] == 1.0
    assert np.isnan(pointing_row(np.zeros(MASK.shape), MASK, target=1, lure=2)["hit"])


def test_summarise_per_prompt_type():
    rows = []
    for prompt_type, target, hit in (
        ("correct", 0.6, 1.0),
        ("correct", 0.4, 0.0),
        ("swapped", 0.2, 0.0),
        ("absent", 0.1, np.nan),
    ):
        rows.append(
            {
                "prompt_type": prompt_type,
                "score": target,
                "target": target,
                "lure": 0.1,
                "other": 0.1,
                "background": 0.1,
                "hit": hit,
            }
        )
    summary = summarise(pd.DataFrame(rows)).set_index("prompt_type")
    assert list(summary.index) == ["correct", "swapped", "absent"]
    assert summary.loc["correct", "target"] == pytest.approx(0.5) and summary.loc["correct", "hit_rate"] == 0.5
    assert summary.loc["correct", "n_prompts"] == 2 and summary.loc["absent", "n_zero_maps"] == 1
    assert np.isnan(summary.loc["absent", "hit_rate"])


@pytest.mark.parametrize(
    "architecture, layer",
    [("clipmech-vit-tiny", "visual.blocks.1.hook_resid_pre"), ("clipmech-rn-tiny", "visual.blocks.3.hook_resid_post")],
)
def test_gradcam_stage_on_random_weights(tiny_dataset, tmp_path, architecture, layer, caplog):
    from clipmech.models.loading import ModelSpec
    from clipmech.stages.gradcam_binding import gradcam_binding, load_examples
    from clipmech.stages.plot_gradcam import plot_gradcam

    out = {
        name: str(tmp_path / f"{name}.{ext}")
        for name, ext in (("pointing", "tsv"), ("summary", "tsv"), ("examples", "npz"))
    }
    params = {"n_images": 3, "target": None, "score": "cosine", "n_figure_rows": 2}
    with caplog.at_level("INFO"):
        gradcam_binding(
            model=ModelSpec("random", architecture, None),
            dataset_dir=str(tiny_dataset),
            out=out,
            gradcam=params,
            seed=0,
            device="cpu",
            threads=1,
        )
    assert f"Grad-CAM at {layer}" in caplog.text
    pointing = pd.read_csv(out["pointing"], sep="\t")
    assert len(pointing) == 3 * 3 and pointing["n_objects"].min() >= 2
    assert all(
        types == ["correct", "swapped", "absent"] for types in pointing.groupby("image_id")["prompt_type"].apply(list)
    )
    mapped = pointing[pointing["total_energy"] > 0]  # an all-zero map (random weights) has no fractions
    assert len(mapped) >= 6 and pointing.loc[pointing["total_energy"] == 0, "hit"].isna().all()
    np.testing.assert_allclose(
        mapped[["target", "lure", "other", "background"]].sum(axis=1), 1.0, atol=1e-5
    )  # 6 digits
    assert (pointing["target_object"] != pointing["lure_object"]).all()
    # The figure's rows, drawn by rule plot_gradcam: images whose maps are not all zero, with their prompts.
    rows = load_examples(out["examples"])
    n_rows = len(rows["failed"])
    assert 1 <= n_rows <= 2 and rows["layer"] == layer and rows["score"] == "cosine"
    assert rows["images"].shape[0] == n_rows and rows["maps"].shape[:2] == (n_rows, 3)
    assert rows["maps"].shape[2:] == rows["images"].shape[1:3] and rows["scores"].shape == (n_rows, 3)
    assert all(prompts in pointing["prompt"].tolist() for row in rows["prompts"] for prompts in row)
    plot_gradcam(examples=out["examples"], out={"figure": str(tmp_path / "figure.png")}, label="test")
    assert (tmp_path / "figure.png").stat().st_size > 1000


def test_plot_rules_draw_the_superposition_and_binding_tables(tiny_dataset, tmp_path):
    """Rules plot_superposition and plot_binding draw from the tables their compute rules write (read back
    from the TSVs, six significant digits), with no figure code in the computation."""
    from clipmech.analyses import binding as binding_analysis
    from clipmech.analyses import superposition as superposition_analysis
    from clipmech.data import datasets, shapes, tables
    from clipmech.stages.plot_binding import plot_binding
    from clipmech.stages.plot_superposition import plot_superposition

    data = datasets.load(str(tiny_dataset))
    rng = np.random.default_rng(0)
    pairs = superposition_analysis.superposition_pair_table(
        rng.dirichlet(np.full(len(FEATURES), 0.5), size=40),
        rng.standard_normal((data.n_images, 8)),
        shapes.feature_counts(data.objects, data.n_images),
        n_units=20,
        min_images=2,
        rng=rng,
    )
    correlations = superposition_analysis.correlation_by_type(pairs, rng, n_resamples=99)
    paths = {name: str(tmp_path / f"{name}.tsv") for name in ("pairs", "correlations", "accuracy")}
    tables.write_table(pairs, paths["pairs"])
    tables.write_table(correlations, paths["correlations"])
    figures = {name: str(tmp_path / f"{name}.png") for name in ("distance", "misclassification", "figure")}
    plot_superposition(
        pairs=paths["pairs"],
        correlations=paths["correlations"],
        out=figures,
        superposition={"variance_kept": 0.9, "threshold": 0.3},
        label="test",
    )
    ((_, _, trials),) = binding_analysis.binding_trials(
        data.objects, ["colour_swap", "absent_shape"], rng, data.n_images, data.n_images
    )
    trials["preferred"] = rng.random(len(trials)) < 0.6
    tables.write_table(binding_analysis.accuracy_by_count(trials), paths["accuracy"])
    plot_binding(accuracy=paths["accuracy"], out=figures, label="test")
    assert all(Path(path).stat().st_size > 1000 for path in figures.values())


def test_binding_benchmark_stage_streams_chunks_like_one_pass(tiny_dataset, tmp_path):
    """The stage in chunks of 3 images (10 images, 7 with >= 2 objects) writes the trials and accuracy of one
    pass: the same foils, similarities equal to float32 rounding, the same preferences."""
    from clipmech.analyses import binding as binding_analysis
    from clipmech.data import datasets
    from clipmech.models.loading import ModelSpec
    from clipmech.stages.binding_benchmark import binding_benchmark
    from clipmech.stores import activation_extraction, activations

    model = ModelSpec("rand", "clipmech-vit-tiny", None)
    store = activation_extraction.extract(
        model, tiny_dataset, tmp_path / "a.zarr", batch_size=8, device="cpu", code="test-code"
    )

    def run(chunk_size):
        out = {name: str(tmp_path / f"{name}-{chunk_size}.tsv") for name in ("trials", "accuracy")}
        binding_benchmark(
            model=model,
            store=str(store),
            dataset_dir=str(tiny_dataset),
            out=out,
            binding={"tasks": list(binding_analysis.TASKS), "confidence_level": 0.95},
            seed=4,
            device="cpu",
            batch_size=5,
            chunk_size=chunk_size,
        )
        return {name: pd.read_csv(path, sep="\t") for name, path in out.items()}

    whole, chunked = run(10), run(3)
    data = datasets.load(str(tiny_dataset))
    ((_, _, trials),) = binding_analysis.binding_trials(
        data.objects, list(binding_analysis.TASKS), np.random.default_rng(4), 10, 10
    )
    prompts = ["image_id", "n_objects", "task", "correct", "foil"]
    pd.testing.assert_frame_equal(whole["trials"][prompts], trials)
    pd.testing.assert_frame_equal(chunked["trials"][prompts], whole["trials"][prompts])
    sims = ["sim_correct", "sim_foil"]
    np.testing.assert_allclose(chunked["trials"][sims], whole["trials"][sims], rtol=1e-5, atol=1e-6)
    assert chunked["trials"]["preferred"].tolist() == whole["trials"]["preferred"].tolist()
    pd.testing.assert_frame_equal(chunked["accuracy"], whole["accuracy"])
    # the image embeddings are the store's: each similarity is a cosine of unit vectors
    emb_NE = activations.open_store(store)["embedding"].values
    np.testing.assert_allclose(np.linalg.norm(emb_NE, axis=1), 1.0, rtol=1e-5)
    assert chunked["trials"][sims].abs().to_numpy().max() <= 1.0
    assert whole["accuracy"].query("n_objects == 'all'")["n_images"].sum() == len(trials)
