"""Training-free segmentation of Shapes scored by mIoU (methods.md Sec. 5): the stage of rule ``segment_shapes``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clipmech.data import datasets, tables
from clipmech.decomposition import components, miou, pool
from clipmech.decomposition import segmentation as segmentation_decomposition
from clipmech.figures import segmentation as segmentation_figures
from clipmech.stages.embed_text import load_text
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def segment_shapes(
    *,
    store: str,
    dataset_dir: str,
    text_path: str,
    out: dict,
    segmentation: dict,
    chunk_size: int,
    seed: int,
    label: str,
) -> None:
    """Training-free segmentation of Shapes colours and shapes with every method; mIoU tables and figures.

    ``out["miou"]``: task, method, scoring (``with_background``: background + classes, background
    by threshold; ``objects_only``: object pixels, argmax over classes), miou, n_images;
    ``out["iou"]``: the per-class IoU; ``out["heatmaps"]``: the pair method's class maps (colour
    task) on example images; ``out["masks"]``: predicted masks of every method next to the
    ground truth for both tasks. ``segmentation`` is the config's ``decomposition.segmentation`` section.
    """
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    parts = pool_store.parts(ds)
    text = load_text(text_path)
    size = data.masks.shape[1:]
    h, c, _ = parts.u_HCE.shape
    k = min(segmentation["top_k"], h * c)
    setups = {}
    for task in segmentation_decomposition.SEGMENTED_TASKS:
        classes, z_KE = components.task_text(text, task)
        heads_Kk, neurons_Kk, _ = pool.top_pairs_by_text(parts.u_HCE, z_KE, k)
        setups[task] = (classes, z_KE, segmentation_decomposition.pair_weights(heads_Kk, neurons_Kk, h, c))
    rng = np.random.default_rng(seed)
    examples = np.sort(
        rng.choice(data.n_images, size=min(segmentation["n_figure_images"], data.n_images), replace=False)
    )
    confusions = {}
    figure_preds = {task: {} for task in segmentation_decomposition.SEGMENTED_TASKS}
    figure_heatmaps = None
    for batch in pool_store.iter_batches(ds, chunk_size):
        ids = np.arange(batch.images.start, batch.images.stop)
        in_figure = np.isin(ids, examples)
        for task, (classes, z_KE, w_KHC) in setups.items():
            gt = segmentation_decomposition.shapes_ground_truth(data.masks, data.objects, ids, task, classes)
            for method in segmentation_decomposition.METHODS:
                logits = segmentation_decomposition.token_logits(
                    batch.x_NTC, batch.alpha_NHT, parts.weights, parts.u_HCE, parts.bias_E, z_KE, w_KHC, method
                )
                pixel_logits = segmentation_decomposition.upsample(logits, parts.grid, size)
                pred = segmentation_decomposition.predict_with_background(
                    pixel_logits, segmentation["background_threshold"]
                )
                for scoring, cm in segmentation_decomposition.shapes_confusions(pred, pixel_logits, gt).items():
                    key = (task, method, scoring)
                    confusions[key] = confusions.get(key, 0) + cm
                if in_figure.any():
                    figure_preds[task].setdefault(method, []).append(pred[in_figure])
                    if task == "colour" and method == "pairs":
                        figure_heatmaps = (
                            pixel_logits[in_figure]
                            if figure_heatmaps is None
                            else np.concatenate([figure_heatmaps, pixel_logits[in_figure]])
                        )
    miou_rows, iou_rows = [], []
    for (task, method, scoring), cm in confusions.items():
        classes = setups[task][0]
        iou = miou.iou_from_confusion(cm)
        miou_rows.append(
            {"task": task, "method": method, "scoring": scoring, "miou": miou.mean_iou(cm), "n_images": data.n_images}
        )
        for name, value in zip(("background", *classes), iou):
            iou_rows.append({"task": task, "method": method, "scoring": scoring, "class": name, "iou": value})
    miou_table = pd.DataFrame(miou_rows)
    tables.write_table(miou_table, out["miou"])
    tables.write_table(pd.DataFrame(iou_rows), out["iou"])
    log.info("mIoU:\n%s", miou_table.to_string())
    images = np.asarray(data.images[examples])
    segmentation_figures.class_heatmaps(
        images,
        figure_heatmaps,
        setups["colour"][0],
        f"{label}: pair-method colour maps (top {k} pairs per class)",
        out["heatmaps"],
    )
    blocks = [
        {
            "task": task,
            "classes": setups[task][0],
            "gt": segmentation_decomposition.shapes_ground_truth(
                data.masks, data.objects, examples, task, setups[task][0]
            ),
            "preds": {method: np.concatenate(preds) for method, preds in figure_preds[task].items()},
        }
        for task in segmentation_decomposition.SEGMENTED_TASKS
    ]
    segmentation_figures.predicted_masks(
        images,
        blocks,
        f"{label}: predicted masks (background threshold {segmentation['background_threshold']})",
        out["masks"],
    )
