"""Training-free segmentation of Shapes scored by mIoU (methods.md Sec. 5): the stage of rule ``segment_shapes``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clipmech import artefacts
from clipmech.data import datasets, tables
from clipmech.decomposition import components, miou, pool
from clipmech.decomposition import segmentation as segmentation_decomposition
from clipmech.stages.embed_text import load_text
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)

#: The rule that writes the figures' examples (named when the file fails its sha256 check).
RULE = "segment_shapes"


def segment_shapes(
    *,
    store: str,
    dataset_dir: str,
    text_path: str,
    out: dict,
    segmentation: dict,
    chunk_size: int,
    seed: int,
) -> None:
    """Training-free segmentation of Shapes colours and shapes with every method; mIoU tables and the
    examples the figures of rule ``plot_segmentation`` show.

    ``out["miou"]``: task, method, scoring (``with_background``: background + classes, background
    by threshold; ``objects_only``: object pixels, argmax over classes), miou, n_images;
    ``out["iou"]``: the per-class IoU; ``out["examples"]`` (:func:`load_examples`): ``n_figure_images``
    seeded example images with the pair method's class maps (colour task) and, for both tasks, the ground
    truth and every method's predicted masks. ``segmentation`` is the config's ``decomposition.segmentation``
    section.
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
    arrays = {
        "images": np.asarray(data.images[examples]),
        "heatmaps": figure_heatmaps,
        "n_pairs": np.array(k),
        "background_threshold": np.array(segmentation["background_threshold"]),
        "tasks": np.array(segmentation_decomposition.SEGMENTED_TASKS),
    }
    for task in segmentation_decomposition.SEGMENTED_TASKS:
        classes = setups[task][0]
        arrays[f"classes_{task}"] = np.array(classes, dtype=str)
        arrays[f"gt_{task}"] = segmentation_decomposition.shapes_ground_truth(
            data.masks, data.objects, examples, task, classes
        )
        arrays[f"methods_{task}"] = np.array(list(figure_preds[task]), dtype=str)
        arrays[f"preds_{task}"] = np.stack([np.concatenate(preds) for preds in figure_preds[task].values()])
    artefacts.save_npz(out["examples"], rule=RULE, **arrays)


def load_examples(path: str) -> dict:
    """The figures' examples that :func:`segment_shapes` wrote, checked against their sha256 record
    (:func:`clipmech.artefacts.load_npz`): ``images`` (n, H, W, 3), ``heatmaps`` (n, K, H, W) the pair method's
    pixel logits of the K colour classes, ``n_pairs`` (the top pairs per class), ``background_threshold``, and
    ``blocks``, one per task as :func:`clipmech.figures.segmentation.predicted_masks` takes them (``task``,
    ``classes``, ``gt`` (n, H, W), ``preds`` {method: (n, H, W)})."""
    with artefacts.load_npz(path, rule=RULE) as npz:
        blocks = []
        for task in (str(task) for task in npz["tasks"]):
            preds = npz[f"preds_{task}"]
            blocks.append(
                {
                    "task": task,
                    "classes": tuple(str(name) for name in npz[f"classes_{task}"]),
                    "gt": npz[f"gt_{task}"],
                    "preds": {str(method): preds[m] for m, method in enumerate(npz[f"methods_{task}"])},
                }
            )
        return {
            "images": npz["images"],
            "heatmaps": npz["heatmaps"],
            "n_pairs": npz["n_pairs"].item(),
            "background_threshold": npz["background_threshold"].item(),
            "blocks": blocks,
        }
