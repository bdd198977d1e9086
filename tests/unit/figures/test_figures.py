"""Figure functions on tiny inputs: each writes a PNG; what a reader must see is checked on the figure itself."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from clipmech.figures import norms, style


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
