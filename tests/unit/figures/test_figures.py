"""Figure functions on tiny inputs: each writes a PNG; what a reader must see is checked on the figure itself."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from clipmech.figures import dataset, norms, sae, selectivity, shift, sparse_accuracy, style, superposition
from clipmech.figures import segmentation as segmentation_figures


@pytest.fixture
def captured(monkeypatch):
    """Keep the figures that a figure module saves (still written as PNG), to inspect their artists."""
    figures = []

    def capture(module):
        def save(fig, path):
            figures.append(fig)
            fig.savefig(path, dpi=40)

        monkeypatch.setattr(module, "save_figure", save)
        return figures

    yield capture
    for fig in figures:
        plt.close(fig)


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_norms_histogram_counts_every_pair_including_cos_above_one(tmp_path, captured):
    figures = captured(norms)
    cos = np.concatenate([np.full(64, 1.0 + 4e-16), np.linspace(0.95, 0.999, 136)])
    rank_one = pd.DataFrame({"cos_pc_u": np.concatenate([cos, [np.nan]])})
    scores = {"pair": np.linspace(1, 2, 200), "neuron": np.linspace(1, 3, 20)}
    norms.component_norms(scores, rank_one, "norms", tmp_path / "norms.png")
    assert _is_png(tmp_path / "norms.png")
    histogram = figures[0].axes[1]
    assert sum(patch.get_height() for patch in histogram.patches) == 200
    edges = norms.cos_bins(cos)
    assert np.histogram(cos, bins=edges)[0].sum() == len(cos)
    assert edges[0] == pytest.approx(0.95) and edges[-1] == 1.0 + 4e-16


def test_save_figure_writes_png_without_software_metadata(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    style.save_figure(fig, tmp_path / "sub" / "f.png")
    data = (tmp_path / "sub" / "f.png").read_bytes()
    assert _is_png(tmp_path / "sub" / "f.png") and b"Software" not in data


def _correlation_row(statistic, ci_low, ci_high, p_value=0.17, n_pairs=10):
    return pd.Series(
        {"statistic": statistic, "ci_low": ci_low, "ci_high": ci_high, "p_value": p_value, "n_pairs": n_pairs}
    )


def test_format_statistic_says_the_score_is_constant_instead_of_nan_intervals():
    assert (
        superposition.format_statistic(_correlation_row(0.26, -0.57, 0.87, 0.47), "rho")
        == "rho = 0.26 [-0.57, 0.87], p = 0.47"
    )
    no_ci = superposition.format_statistic(_correlation_row(0.37, np.nan, np.nan), "rho")
    assert no_ci == "rho = 0.37, no CI (score constant in resamples), p = 0.17"
    undefined = superposition.format_statistic(_correlation_row(np.nan, np.nan, np.nan, np.nan), "Pearson r")
    assert undefined == "Pearson r undefined (score constant)"
    assert (
        superposition.format_statistic(_correlation_row(np.nan, np.nan, np.nan, np.nan, n_pairs=2), "rho")
        == "rho undefined (fewer than 3 pairs)"
    )
    for text in (no_ci, undefined):
        assert "nan" not in text


def test_superposition_scatter_with_a_constant_score_has_no_nan_in_its_legends(tmp_path, captured):
    figures = captured(superposition)
    kinds = ["shape"] * 4 + ["colour"] * 4
    pairs = pd.DataFrame(
        {
            "type": kinds,
            "S_ratio": [0.0] * 7 + [0.5],
            "S_joint": np.linspace(0.01, 0.08, 8),
            "D_full": np.linspace(0.2, 0.6, 8),
            "D_pca": np.linspace(0.3, 0.5, 8),
        }
    )
    rows = []
    for pair_type in ("all", "shape", "colour"):
        for score in ("S_ratio", "S_joint"):
            for sep in ("D_full", "D_pca"):
                for method in ("pearson", "spearman"):
                    constant = score == "S_ratio" and pair_type == "shape"
                    rows.append(
                        {
                            "pair_type": pair_type,
                            "score": score,
                            "separability": sep,
                            "method": method,
                            "n_pairs": 4,
                            "statistic": np.nan if constant else 0.3,
                            "p_value": np.nan if constant else 0.2,
                            "ci_low": np.nan if score == "S_ratio" else -0.1,
                            "ci_high": np.nan if score == "S_ratio" else 0.6,
                        }
                    )
    superposition.superposition_scatter(pairs, pd.DataFrame(rows), "D", 0.9, "scatter", tmp_path / "scatter.png")
    assert _is_png(tmp_path / "scatter.png")
    texts = [text.get_text() for ax in figures[0].axes for text in ax.get_legend().get_texts()]
    assert texts and not any("nan" in text for text in texts)
    assert any("score constant" in text for text in texts)


def test_sparse_accuracy_legend_says_what_dashed_lines_are(tmp_path, captured):
    figures = captured(sparse_accuracy)
    rows = [{"task": "colour", "level": "model", "directions": "model", "m": np.nan, "accuracy": 0.9}]
    for level in ("pair", "neuron"):
        rows.append({"task": "colour", "level": level, "directions": "exact", "m": np.nan, "accuracy": 0.8})
        rows += [
            {"task": "colour", "level": level, "directions": "sparse", "m": m, "accuracy": 0.1 * m} for m in (1, 2, 4)
        ]
    sparse_accuracy.sparse_accuracy(pd.DataFrame(rows), "sparse", tmp_path / "sparse.png")
    assert _is_png(tmp_path / "sparse.png")
    legend = figures[0].legends[0]
    styles = {text.get_text(): line.get_linestyle() for text, line in zip(legend.get_texts(), legend.get_lines())}
    assert styles["exact directions / rank-1 PCs"] == "--" and styles["m-sparse directions"] == "-"


def test_shift_monitoring_has_a_legend_for_share_and_score(tmp_path, captured):
    figures = captured(shift)
    splits = pd.DataFrame(
        {
            "concept": ["red"] * 3 + ["square"] * 3,
            "split": [0, 1, 2] * 2,
            "true_share": [0.1, 0.5, 0.9, 0.3, 0.6, 0.2],
            "mean_score": [0.05, 0.1, 0.15, 0.08, 0.09, 0.07],
            "sd_score": [0.01, 0.02, 0.01, 0.02, 0.02, 0.01],
        }
    )
    correlations = pd.DataFrame(
        {"concept": ["red", "square"], "point_biserial_r": [0.7, 0.2], "split_pearson_r": [0.99, 0.5]}
    )
    shift.shift_monitoring(splits, correlations, "shift", tmp_path / "shift.png")
    assert _is_png(tmp_path / "shift.png")
    labels = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert labels == ["true concept share", "mean concept score ± 1 SD over images"]


def test_entropy_by_layer_has_a_title_and_the_legend_outside_the_axes(tmp_path, captured):
    figures = captured(selectivity)
    rng = np.random.default_rng(0)
    units = pd.DataFrame({"layer": np.repeat([0, 1], 20), "entropy": rng.uniform(2.3, 2.77, 40)})
    selectivity.entropy_by_layer(units, rng.uniform(2.74, 2.77, 500), tmp_path / "entropy.png")
    assert _is_png(tmp_path / "entropy.png")
    ax = figures[0].axes[0]
    assert "40 units" in ax.get_title() and "null" in ax.get_title()
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1


def test_image_figures_write_pngs_with_frames_and_labelled_colour_bars(tmp_path, captured):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    objects = pd.DataFrame({"image_id": [0, 1, 2, 2], "n_objects": [1, 1, 2, 2]})
    previews = captured(dataset)
    dataset.dataset_preview(images, objects, tmp_path / "preview.png", n=4)
    framed = [ax for ax in previews[0].axes if ax.images]
    assert len(framed) == 3 and all(ax.axison and ax.spines["left"].get_visible() for ax in framed)
    heatmaps = captured(selectivity)
    captured(segmentation_figures)  # the same list
    maps = rng.random((6, 4, 4))
    selectivity.patch_heatmaps(images[:3], maps[:3], images[3:], maps[3:], "patches", tmp_path / "patches.png")
    logits = rng.normal(size=(2, 3, 16, 16))
    segmentation_figures.class_heatmaps(images[:2], logits, ["red", "green", "blue"], "maps", tmp_path / "maps.png")
    labels = [ax.get_ylabel() for fig in heatmaps[-2:] for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert labels == ["activation (shared scale)", "class logit", "class logit"]
    gt = rng.integers(0, 4, size=(2, 16, 16))
    blocks = [
        {"task": "shape", "classes": ["circle", "square", "triangle"], "gt": gt, "preds": {"pairs": gt, "heads": gt}}
    ]
    segmentation_figures.predicted_masks(images[:2], blocks, "masks", tmp_path / "masks.png")
    for name in ("preview", "patches", "maps", "masks"):
        assert _is_png(tmp_path / f"{name}.png")


def test_suptitles_clear_the_first_row(tmp_path, captured):
    figures = captured(shift)
    splits = pd.DataFrame(
        {
            "concept": ["red"] * 2,
            "split": [0, 1],
            "true_share": [0.1, 0.9],
            "mean_score": [0.1, 0.2],
            "sd_score": [0.01, 0.01],
        }
    )
    correlations = pd.DataFrame({"concept": ["red"], "point_biserial_r": [0.7], "split_pearson_r": [1.0]})
    shift.shift_monitoring(splits, correlations, "a long suptitle", tmp_path / "shift.png")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    title_bottom = fig._suptitle.get_window_extent(renderer).y0
    assert all(ax.get_tightbbox(renderer).y1 <= title_bottom for ax in fig.axes)


def test_sae_training_curves_plot_every_step_and_name_the_final_values(tmp_path, captured):
    figures = captured(sae)
    steps = np.arange(1, 201)
    log = pd.DataFrame(
        {
            "step": steps,
            "tokens": steps * 64,
            "fvu": 1.0 / steps,
            "auxk": 0.0,
            "l0": np.full(200, 4.0),
            "dead_fraction": np.linspace(0, 0.2, 200),
        }
    )
    sae.training_curves(log, "m at visual.blocks.1.hook_resid_pre", tmp_path / "training.png")
    assert _is_png(tmp_path / "training.png")
    fvu_ax, l0_ax, dead_ax = figures[0].axes
    assert fvu_ax.get_yscale() == "log" and [len(line.get_xdata()) for line in fvu_ax.lines] == [200, 200]
    assert dead_ax.get_ylim()[1] >= 0.2 and l0_ax.get_ylim()[0] == 0
    assert "dead 0.200" in figures[0]._suptitle.get_text() and "FVU 0.005" in figures[0]._suptitle.get_text()
