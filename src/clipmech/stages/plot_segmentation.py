"""Draw training-free segmentation of Shapes (methods.md Sec. 5): the stage of rule ``plot_segmentation``."""

from __future__ import annotations

from clipmech.figures import segmentation as segmentation_figures
from clipmech.stages.segment_shapes import load_examples


def plot_segmentation(*, examples: str, out: dict, label: str) -> None:
    """The pair method's class maps on the example images (``out["heatmaps"]``,
    :func:`clipmech.figures.segmentation.class_heatmaps`) and every method's predicted masks next to the
    ground truth for both tasks (``out["masks"]``, :func:`clipmech.figures.segmentation.predicted_masks`),
    from the examples rule ``segment_shapes`` wrote (:func:`clipmech.stages.segment_shapes.load_examples`);
    ``label`` ("<model> on <dataset>") titles them."""
    shown = load_examples(examples)
    colour = next(block for block in shown["blocks"] if block["task"] == "colour")
    segmentation_figures.class_heatmaps(
        shown["images"],
        shown["heatmaps"],
        colour["classes"],
        f"{label}: pair-method colour maps (top {shown['n_pairs']} pairs per class)",
        out["heatmaps"],
    )
    segmentation_figures.predicted_masks(
        shown["images"],
        shown["blocks"],
        f"{label}: predicted masks (background threshold {shown['background_threshold']})",
        out["masks"],
    )
