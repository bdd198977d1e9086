"""Draw Grad-CAM examples of correct and failed bindings (methods.md Sec. 4): the stage of rule ``plot_gradcam``."""

from __future__ import annotations

from clipmech.figures import gradcam as gradcam_figures
from clipmech.stages.gradcam_binding import load_examples


def plot_gradcam(*, examples: str, out: dict, label: str) -> None:
    """Rows of images with the Grad-CAM maps of their correct, swapped and absent prompts (``out["figure"]``,
    :func:`clipmech.figures.gradcam.gradcam_rows`) from the examples rule ``gradcam_binding`` picked
    (:func:`clipmech.stages.gradcam_binding.load_examples`); ``label`` ("<model> on <dataset>") titles them."""
    rows = load_examples(examples)
    gradcam_figures.gradcam_rows(
        rows["images"],
        rows["maps"],
        rows["prompts"],
        rows["scores"],
        rows["failed"],
        f"{label}: Grad-CAM at {rows['layer']} ({rows['score']}); prompts correct / swapped / absent",
        out["figure"],
    )
