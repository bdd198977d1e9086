"""Stages of the CLIP-ResNet neuron x attention-head decomposition (methods.md Sec. 5).

One function per rule: attention-pool extraction, text embeddings, the decomposition with its
checks, mean-ablation curves, OMP text decomposition, segmentation (Shapes and PASCAL
Context-59), attention sink and register neurons, and distribution-shift monitoring.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipmech import (
    attention_sink,
    attnpool_store,
    component_analysis,
    datasets,
    decomposition_plots,
    extract,
    models,
    omp,
    pair_segmentation,
    segmentation,
    shapes,
    shift,
    text_decomposition,
    zeroshot,
)
from clipmech import decomposition as dec

log = logging.getLogger(__name__)

#: The Shapes attributes segmented (position is a location, not a region class).
SEGMENTED_TASKS = ("colour", "shape")


def _write(table: pd.DataFrame, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.6g")


def _check_images(ds, data: datasets.ImageDataset, store: str, dataset_dir: str) -> None:
    if ds.sizes["image"] != data.n_images:
        raise ValueError(f"store {store} holds {ds.sizes['image']} images but dataset {dataset_dir} has {data.n_images}")


# --------------------------------------------------------------------------------------------
# Extraction and text
# --------------------------------------------------------------------------------------------


def extract_attnpool(name: str, model_entry: dict, dataset_dir: str, store: str, params: dict, threads: int) -> None:
    """Write the attention-pool store of the model ``name`` on a dataset (:mod:`clipmech.attnpool_store`)."""
    torch.set_num_threads(threads)
    attnpool_store.extract_attnpool(
        models.model_spec({name: model_entry}, name),
        dataset_dir,
        store,
        batch_size=params["batch_size"],
        device=params["device"],
    )


def embed_text(name: str, model_entry: dict, output: str, params: dict, device: str, threads: int) -> None:
    """Embed the vocabulary (the ``n_words`` most common English words) and the zero-shot prompts.

    Writes an npz with ``words`` (A,), ``word_embeddings`` (A, E), ``prompt_task``,
    ``prompt_class``, ``prompts`` (P,) and ``prompt_embeddings`` (P, E); embeddings are
    L2-normalised float32 from the model's text tower.
    """
    torch.set_num_threads(threads)
    torch_device = extract.resolve_device(device)
    model, _, tokenizer = models.load(models.model_spec({name: model_entry}, name), torch_device)
    words = text_decomposition.vocabulary(params["n_words"])
    word_embeddings = text_decomposition.embed_texts(model, tokenizer, words, params["batch_size"], torch_device)
    tasks, classes, prompts = [], [], []
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, task_prompts = zeroshot.attribute_prompts(task)
        tasks += [task] * len(names)
        classes += list(names)
        prompts += task_prompts
    prompt_embeddings = text_decomposition.embed_texts(model, tokenizer, prompts, params["batch_size"], torch_device)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        output,
        words=np.array(words),
        word_embeddings=word_embeddings,
        prompt_task=np.array(tasks),
        prompt_class=np.array(classes),
        prompts=np.array(prompts),
        prompt_embeddings=prompt_embeddings,
    )
    log.info("embedded %d words and %d prompts with %s", len(words), len(prompts), name)


def _task_text(text: np.lib.npyio.NpzFile, task: str) -> tuple[tuple[str, ...], np.ndarray]:
    rows = text["prompt_task"] == task
    return tuple(text["prompt_class"][rows].tolist()), text["prompt_embeddings"][rows].astype(np.float64)


def _zero_shot_tasks(data: datasets.ImageDataset, text: np.lib.npyio.NpzFile) -> list[component_analysis.ZeroShotTask]:
    """The attribute tasks on the dataset's single-object images (component_analysis docstring)."""
    single = data.objects[data.objects["n_objects"] == 1].sort_values("image_id")
    if not len(single):
        raise ValueError("the dataset has no single-object images: the zero-shot attribute tasks need them (min_objects: 1)")
    tasks = []
    for task in zeroshot.ATTRIBUTE_TASKS:
        classes, text_KE = _task_text(text, task)
        truth = single[task].map({c: k for k, c in enumerate(classes)}).to_numpy()
        tasks.append(component_analysis.ZeroShotTask(task, classes, text_KE, single["image_id"].to_numpy(), truth))
    return tasks


# --------------------------------------------------------------------------------------------
# Decomposition, rank-1 check, mean-ablation
# --------------------------------------------------------------------------------------------


def decompose_attnpool(store: str, out: dict, params: dict, label: str) -> None:
    """Scalars, norms and the checks of the decomposition (methods.md Sec. 5 tests).

    ``out["pairs"]``: every pair ranked by mean contribution norm (rank, head, neuron, mean_norm,
    u_norm, s_mean, and for the top ``n_checked`` pairs cos_pc_u and explained);
    ``out["summary"]``: reconstruction error of the stored outputs, rank-1 statistics of pairs vs
    neurons, norm shares; ``out["figure"]``.
    """
    ds = attnpool_store.open_store(store)
    parts = attnpool_store.parts(ds)
    s_NHC, y_NE = attnpool_store.pair_scalars(ds, params["chunk_size"])
    y_hat_NE = dec.reconstruct_output(s_NHC, parts.u_HCE, parts.bias_E, params["chunk_size"])
    rel_err_N = np.linalg.norm(y_hat_NE - y_NE, axis=1) / np.linalg.norm(y_NE, axis=1)
    scores = component_analysis.component_scores(s_NHC, parts.u_HCE)
    h, c = scores["pair"].shape
    order = np.argsort(-scores["pair"].ravel(), kind="stable")
    heads, neurons = np.divmod(order, c)
    n_checked = min(params["n_checked"], h * c)
    rank_one = component_analysis.pair_rank_one(s_NHC, parts.u_HCE, heads[:n_checked], neurons[:n_checked], params["pc_top_k"])
    top_neurons = np.argsort(-scores["neuron"], kind="stable")[: min(params["n_checked"], c)]
    _, neuron_explained = component_analysis.neuron_directions(s_NHC, parts.u_HCE, top_neurons, params["pc_top_k"])
    table = pd.DataFrame(
        {
            "rank": np.arange(1, h * c + 1),
            "head": heads,
            "neuron": neurons,
            "mean_norm": scores["pair"].ravel()[order],
            "u_norm": dec.direction_norms(parts.u_HCE).ravel()[order],
            "s_mean": s_NHC.mean(axis=0).ravel()[order],
        }
    )
    table = table.merge(rank_one, on=["head", "neuron"], how="left")
    _write(table, out["pairs"])

    def share(level: str, fraction: float) -> float:
        score = np.sort(np.ravel(scores[level]))[::-1]
        return float(score[: max(1, int(round(fraction * score.size)))].sum() / score.sum())

    summary = {
        "n_images": int(s_NHC.shape[0]),
        "n_heads": int(h),
        "n_neurons": int(c),
        "n_tokens": int(ds.sizes["token"]),
        "grid": list(parts.grid),
        "embed_dim": int(parts.u_HCE.shape[2]),
        "reconstruction_rel_err_max": float(rel_err_N.max()),
        "reconstruction_rel_err_median": float(np.median(rel_err_N)),
        "n_checked": int(n_checked),
        "pc_top_k": int(params["pc_top_k"]),
        "pair_cos_pc_u_min": float(rank_one["cos_pc_u"].min()),
        "pair_cos_pc_u_median": float(rank_one["cos_pc_u"].median()),
        "pair_pc1_explained_median": float(rank_one["explained"].median()),
        "neuron_pc1_explained_median": float(np.nanmedian(neuron_explained)),
        "norm_share_top_10pct": {level: share(level, 0.1) for level in scores},
        "norm_share_top_20pct": {level: share(level, 0.2) for level in scores},
    }
    log.info("decomposition summary: %s", summary)
    if summary["reconstruction_rel_err_max"] > params["max_rel_err"]:
        raise RuntimeError(
            f"the decomposition does not reproduce the stored outputs: max relative error "
            f"{summary['reconstruction_rel_err_max']:.3g} > max_rel_err={params['max_rel_err']}"
        )
    Path(out["summary"]).write_text(json.dumps(summary, indent=2) + "\n")
    decomposition_plots.component_norms(
        scores,
        rank_one,
        f"{label}: {h} heads x {c} neurons; reconstruction error {summary['reconstruction_rel_err_max']:.1e}; "
        f"median PC1 variance share: pairs {summary['pair_pc1_explained_median']:.3f}, "
        f"neurons {summary['neuron_pc1_explained_median']:.3f}",
        out["figure"],
    )


def ablate_components(store: str, dataset_dir: str, text_path: str, out: dict, params: dict, chunk_size: int, label: str) -> None:
    """Zero-shot accuracy vs fraction of pairs, neurons and heads kept, the rest mean-ablated (paper Fig. 1).

    Contributions of pairs, neurons and heads are mean-ablated with the attention held fixed;
    the ``neuron_activation`` level mean-ablates the neurons' activations instead, so the
    attention is recomputed (:func:`clipmech.component_analysis.activation_ablation_curve`).
    """
    ds = attnpool_store.open_store(store)
    data = datasets.load(dataset_dir)
    _check_images(ds, data, store, dataset_dir)
    parts = attnpool_store.parts(ds)
    s_NHC, y_NE = attnpool_store.pair_scalars(ds, chunk_size)
    tasks = _zero_shot_tasks(data, np.load(text_path))
    scores = component_analysis.component_scores(s_NHC, parts.u_HCE)
    table = component_analysis.ablation_curves(s_NHC, parts.u_HCE, parts.bias_E, scores, params["fractions"], tasks, chunk_size)
    evaluated, _ = component_analysis.evaluated_images(tasks)
    x_NTC = np.concatenate([batch.x_NTC for batch in attnpool_store.iter_batches(ds, chunk_size, evaluated)])
    activation = component_analysis.activation_ablation_curve(
        x_NTC, attnpool_store.token_means(ds, chunk_size), parts.weights, scores["neuron"], params["fractions"], tasks
    )
    table = pd.concat([table, activation], ignore_index=True)
    model_acc = {task.name: component_analysis.zero_shot_accuracy(y_NE, task) for task in tasks}
    table["model_accuracy"] = table["task"].map(model_acc)
    _write(table, out["table"])
    log.info("unablated accuracy: %s", model_acc)
    chance = {task.name: 1.0 / len(task.classes) for task in tasks}
    decomposition_plots.ablation_curves(
        table, chance, f"{label}: mean-ablation of all but the top components ({len(tasks[0].images)} single-object images)", out["figure"]
    )


# --------------------------------------------------------------------------------------------
# Text decomposition (OMP)
# --------------------------------------------------------------------------------------------


def decompose_text(
    store: str, dataset_dir: str, text_path: str, out: dict, params: dict, pc_top_k: int, chunk_size: int, device: str, threads: int, label: str
) -> None:
    """OMP text decomposition of neuron-head directions and the sparse-direction accuracy (paper Fig. 2).

    Coded directions: the top ``keep_fraction`` pairs by mean norm and the top ``n_class_pairs``
    pairs of every zero-shot class by cos(u, prompt). ``out["words"]``: the coded kept pairs
    (sorted by mean norm) with their first words; ``out["class_pairs"]``: each class's pairs
    with words; ``out["accuracy"]``: zero-shot accuracy with the kept pairs' directions replaced
    by their m-sparse approximations (rest mean-ablated), against the neuron baseline (kept
    neurons reduced to their first PC, itself replaced by its m-sparse approximation).
    """
    torch.set_num_threads(threads)
    torch_device = extract.resolve_device(device)
    ds = attnpool_store.open_store(store)
    data = datasets.load(dataset_dir)
    _check_images(ds, data, store, dataset_dir)
    parts = attnpool_store.parts(ds)
    s_NHC, y_NE = attnpool_store.pair_scalars(ds, chunk_size)
    text = np.load(text_path)
    words, dictionary_AE = text["words"].tolist(), text["word_embeddings"]
    tasks = _zero_shot_tasks(data, text)
    m_max = params["n_components"]
    if max(params["m_values"]) > m_max:
        raise ValueError(f"m_values {params['m_values']} must not exceed n_components={m_max}")
    u_HCE = parts.u_HCE
    h, c, _ = u_HCE.shape
    scores = component_analysis.component_scores(s_NHC, u_HCE)
    keep_HC = dec.top_fraction_mask(scores["pair"], params["keep_fraction"])
    order = np.argsort(-scores["pair"].ravel(), kind="stable")
    kept = order[keep_HC.ravel()[order]]
    kept_heads, kept_neurons = np.divmod(kept, c)
    class_rows = []
    for task in tasks:
        heads_Kk, neurons_Kk, cos_Kk = text_decomposition.top_pairs_by_text(u_HCE, task.text_KE, params["n_class_pairs"])
        for k, name in enumerate(task.classes):
            for r in range(heads_Kk.shape[1]):
                class_rows.append({"task": task.name, "class": name, "rank": r + 1, "head": heads_Kk[k, r], "neuron": neurons_Kk[k, r], "cos": cos_Kk[k, r]})
    class_table = pd.DataFrame(class_rows)
    class_pairs = class_table[["head", "neuron"]].to_numpy()
    coded = np.unique(np.concatenate([np.stack([kept_heads, kept_neurons], 1), class_pairs]), axis=0)
    code = text_decomposition.sparse_codes(u_HCE[coded[:, 0], coded[:, 1]], dictionary_AE, m_max, params["omp_batch_size"], torch_device)
    described = text_decomposition.words_table(coded[:, 0], coded[:, 1], u_HCE, code, dictionary_AE, words, params["n_words_shown"])
    described["mean_norm"] = scores["pair"][coded[:, 0], coded[:, 1]]
    words_out = described.merge(pd.DataFrame({"head": kept_heads, "neuron": kept_neurons, "rank": np.arange(1, len(kept) + 1)}), on=["head", "neuron"])
    _write(words_out.sort_values("rank")[["rank", "head", "neuron", "mean_norm", "n_atoms", "cos_sparse_u", "words"]], out["words"])
    class_out = class_table.merge(described, on=["head", "neuron"]).sort_values(["task", "class", "rank"])
    _write(class_out[["task", "class", "rank", "head", "neuron", "cos", "mean_norm", "cos_sparse_u", "words"]], out["class_pairs"])

    # accuracy vs m: pairs
    index = {tuple(p): i for i, p in enumerate(coded.tolist())}
    rows_K = np.array([index[(hh, nn)] for hh, nn in zip(kept_heads.tolist(), kept_neurons.tolist())], dtype=np.intp)
    u_norm_K = np.linalg.norm(u_HCE[kept_heads, kept_neurons], axis=1)
    kept_code = omp.OMPResult(*(None if t is None else t[torch.as_tensor(rows_K)] for t in code))
    s_mean_HC = s_NHC.mean(axis=0)
    records = []

    def score(level: str, directions: str, m, y: np.ndarray) -> None:
        for task in tasks:
            records.append({"level": level, "directions": directions, "m": m, "task": task.name, "accuracy": component_analysis.zero_shot_accuracy(y, task)})

    score("model", "exact", np.nan, y_NE)
    exact_pairs = component_analysis.pair_outputs_with_directions(
        s_NHC, u_HCE, parts.bias_E, keep_HC, s_mean_HC, kept_heads, kept_neurons, u_HCE[kept_heads, kept_neurons], chunk_size
    )
    score("pair", "exact", np.nan, exact_pairs)
    for m in params["m_values"]:
        sparse_KE = text_decomposition.sparse_directions(kept_code, dictionary_AE, m, u_norm_K)
        y = component_analysis.pair_outputs_with_directions(s_NHC, u_HCE, parts.bias_E, keep_HC, s_mean_HC, kept_heads, kept_neurons, sparse_KE, chunk_size)
        score("pair", "sparse", m, y)
    # neurons: the same fraction of neurons, each reduced to its first PC
    keep_C = dec.top_fraction_mask(scores["neuron"], params["keep_fraction"])
    v_KE, _ = component_analysis.neuron_directions(s_NHC, u_HCE, np.flatnonzero(keep_C), pc_top_k)
    score("neuron", "exact", np.nan, component_analysis.neuron_outputs_rank_one(s_NHC, u_HCE, parts.bias_E, keep_C, s_mean_HC, v_KE, v_KE))
    neuron_code = text_decomposition.sparse_codes(v_KE, dictionary_AE, m_max, params["omp_batch_size"], torch_device)
    for m in params["m_values"]:
        sparse_KE = text_decomposition.sparse_directions(neuron_code, dictionary_AE, m, np.linalg.norm(v_KE, axis=1))
        score("neuron", "sparse", m, component_analysis.neuron_outputs_rank_one(s_NHC, u_HCE, parts.bias_E, keep_C, s_mean_HC, v_KE, sparse_KE))
    accuracy = pd.DataFrame(records)
    _write(accuracy, out["accuracy"])
    log.info("sparse-direction accuracy:\n%s", accuracy.to_string())
    decomposition_plots.sparse_accuracy(
        accuracy,
        f"{label}: top {params['keep_fraction']:.0%} of pairs / neurons kept, directions from m of {len(words)} words",
        out["figure"],
    )


# --------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------


def segment_shapes(store: str, dataset_dir: str, text_path: str, out: dict, params: dict, chunk_size: int, seed: int, label: str) -> None:
    """Training-free segmentation of Shapes colours and shapes with every method; mIoU tables and figures.

    ``out["miou"]``: task, method, scoring (``with_background``: background + classes, background
    by threshold; ``objects_only``: object pixels, argmax over classes), miou, n_images;
    ``out["iou"]``: the per-class IoU; ``out["heatmaps"]``: the pair method's class maps (colour
    task) on example images; ``out["masks"]``: predicted masks of every method next to the
    ground truth for both tasks.
    """
    ds = attnpool_store.open_store(store)
    data = datasets.load(dataset_dir)
    _check_images(ds, data, store, dataset_dir)
    parts = attnpool_store.parts(ds)
    text = np.load(text_path)
    size = data.masks.shape[1:]
    h, c, _ = parts.u_HCE.shape
    k = min(params["top_k"], h * c)
    setups = {}
    for task in SEGMENTED_TASKS:
        classes, z_KE = _task_text(text, task)
        heads_Kk, neurons_Kk, _ = text_decomposition.top_pairs_by_text(parts.u_HCE, z_KE, k)
        setups[task] = (classes, z_KE, pair_segmentation.pair_weights(heads_Kk, neurons_Kk, h, c))
    rng = np.random.default_rng(seed)
    examples = np.sort(rng.choice(data.n_images, size=min(params["n_figure_images"], data.n_images), replace=False))
    confusions = {}
    figure_preds = {task: {} for task in SEGMENTED_TASKS}
    figure_heatmaps = None
    for batch in attnpool_store.iter_batches(ds, chunk_size):
        ids = np.arange(batch.images.start, batch.images.stop)
        in_figure = np.isin(ids, examples)
        for task, (classes, z_KE, w_KHC) in setups.items():
            gt = pair_segmentation.shapes_ground_truth(data.masks, data.objects, ids, task, classes)
            for method in pair_segmentation.METHODS:
                logits = pair_segmentation.token_logits(batch.x_NTC, batch.alpha_NHT, parts.weights, parts.u_HCE, parts.bias_E, z_KE, w_KHC, method)
                pixel_logits = pair_segmentation.upsample(logits, parts.grid, size)
                pred = pair_segmentation.predict_with_background(pixel_logits, params["background_threshold"])
                for scoring, cm in pair_segmentation.shapes_confusions(pred, gt, len(classes)).items():
                    key = (task, method, scoring)
                    confusions[key] = confusions.get(key, 0) + cm
                if in_figure.any():
                    figure_preds[task].setdefault(method, []).append(pred[in_figure])
                    if task == "colour" and method == "pairs":
                        figure_heatmaps = pixel_logits[in_figure] if figure_heatmaps is None else np.concatenate([figure_heatmaps, pixel_logits[in_figure]])
    miou_rows, iou_rows = [], []
    for (task, method, scoring), cm in confusions.items():
        classes = setups[task][0]
        iou = segmentation.iou_from_confusion(cm)
        miou_rows.append({"task": task, "method": method, "scoring": scoring, "miou": segmentation.mean_iou(cm), "n_images": data.n_images})
        for name, value in zip(("background", *classes), iou):
            iou_rows.append({"task": task, "method": method, "scoring": scoring, "class": name, "iou": value})
    miou = pd.DataFrame(miou_rows)
    _write(miou, out["miou"])
    _write(pd.DataFrame(iou_rows), out["iou"])
    log.info("mIoU:\n%s", miou.to_string())
    images = np.asarray(data.images[examples])
    decomposition_plots.class_heatmaps(
        images, figure_heatmaps, setups["colour"][0], f"{label}: pair-method colour maps (top {k} pairs per class)", out["heatmaps"]
    )
    blocks = [
        {
            "task": task,
            "classes": setups[task][0],
            "gt": pair_segmentation.shapes_ground_truth(data.masks, data.objects, examples, task, setups[task][0]),
            "preds": {method: np.concatenate(preds) for method, preds in figure_preds[task].items()},
        }
        for task in SEGMENTED_TASKS
    ]
    decomposition_plots.predicted_masks(
        images, blocks, f"{label}: predicted masks (background threshold {params['background_threshold']})", out["masks"]
    )


def segment_pascal_context(name: str, model_entry: dict, out: dict, params: dict, device: str, threads: int, label: str) -> None:
    """PASCAL Context-59 mIoU of every method with mmseg's protocol (methods.md Sec. 5).

    Each image is resized keeping its aspect ratio to fit ``scale`` (long, short) (shorter side
    384 for RN50x16), cut into ``crop_size`` windows at ``stride`` (mmseg slide inference), each
    window's logits computed by the decomposition and averaged, resized to the label's size, and
    argmaxed over the 59 classes; labels go through ``reduce_zero_label`` (background not
    scored). MaskCLIP logits are cosines times ``logit_scale`` (averaging logits, as mmseg does,
    the argmax does not depend on it); the pair method uses the top ``top_k`` pairs per class.
    """
    torch.set_num_threads(threads)
    torch_device = extract.resolve_device(device)
    model, preprocess, tokenizer = models.load(models.model_spec({name: model_entry}, name), torch_device)
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
    if params["crop_size"] != image_size:
        raise ValueError(f"crop_size {params['crop_size']} must equal the model's input size {image_size} (its positional embedding is fixed)")
    normalize = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    weights = dec.attnpool_weights(model.visual.attnpool)
    u_HCE, bias_E = dec.neuron_head_directions(weights), dec.output_bias(weights)
    h, c, _ = u_HCE.shape
    classes = pair_segmentation.PASCAL_CONTEXT_59
    z_KE = text_decomposition.embed_texts(model, tokenizer, classes, len(classes), torch_device).astype(np.float64)
    heads_Kk, neurons_Kk, _ = text_decomposition.top_pairs_by_text(u_HCE, z_KE, min(params["top_k"], h * c))
    w_KHC = pair_segmentation.pair_weights(heads_Kk, neurons_Kk, h, c)
    grid = (image_size // 32, image_size // 32)
    items = pair_segmentation.pascal_context_items(params["root"], params["split"])
    if params["n_images"] is not None:
        items = items[: params["n_images"]]
    confusions = {method: 0 for method in pair_segmentation.METHODS}

    def crop_logits(crop_3SS: torch.Tensor) -> dict[str, np.ndarray]:
        cap = dec.capture_attnpool(model, crop_3SS[None].to(torch_device))
        x_NTC, alpha_NHT = cap.x_NTC.double().cpu().numpy(), cap.alpha_NHT.double().cpu().numpy()
        logits = {}
        for method in pair_segmentation.METHODS:
            token = pair_segmentation.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, method)
            scale = params["logit_scale"] if method == "maskclip" else 1.0
            logits[method] = scale * pair_segmentation.upsample(token, grid, (image_size, image_size))[0]
        return logits

    for i, (image_path, label_path) in enumerate(items):
        image, gt = pair_segmentation.read_pascal_item(image_path, label_path)
        height, width = pair_segmentation.rescale_size(*gt.shape, tuple(params["scale"]))
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        pixels = normalize(torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0)
        gt_scored = segmentation.reduce_zero_label(gt)
        for method, logits_KHW in pair_segmentation.slide_logits(pixels, params["crop_size"], params["stride"], crop_logits).items():
            full_KHW = pair_segmentation.upsample(logits_KHW.reshape(1, len(classes), -1), (height, width), gt.shape)[0]
            confusions[method] = confusions[method] + segmentation.confusion_matrix(full_KHW.argmax(axis=0), gt_scored, len(classes))
        log.info("PASCAL Context image %d/%d done", i + 1, len(items))
    miou_rows, iou_rows = [], []
    for method, cm in confusions.items():
        miou_rows.append({"method": method, "miou": segmentation.mean_iou(cm), "n_images": len(items), "top_k": int(w_KHC[0].sum())})
        iou_rows += [{"method": method, "class": name, "iou": v} for name, v in zip(classes, segmentation.iou_from_confusion(cm))]
    miou = pd.DataFrame(miou_rows)
    _write(miou, out["miou"])
    _write(pd.DataFrame(iou_rows), out["iou"])
    log.info("%s PASCAL Context-59 mIoU:\n%s", label, miou.to_string())


# --------------------------------------------------------------------------------------------
# Attention sink and register neurons
# --------------------------------------------------------------------------------------------


def find_registers(store: str, out: dict, params: dict, label: str) -> None:
    """The attention sink (token with the largest mean attention) and the register neurons (paper A.5-A.6)."""
    ds = attnpool_store.open_store(store)
    parts = attnpool_store.parts(ds)
    n = parts.n_images if params["n_images"] is None else min(params["n_images"], parts.n_images)
    alpha_NHT = ds["alpha"].values.astype(np.float64)
    tokens = attention_sink.token_attention_table(alpha_NHT, parts.grid)
    sink = int(tokens.loc[tokens["is_sink"], "token"].iloc[0])
    batch = next(attnpool_store.iter_batches(ds, n, np.arange(n)))
    registers = attention_sink.register_neurons(batch.x_NTC, batch.alpha_NHT, parts.weights, sink, params["chunk_size"])
    registers["sink_token"] = sink
    _write(tokens, out["tokens"])
    _write(registers, out["registers"])
    log.info("sink token %d (mean attention %.3f); top register neurons:\n%s", sink, tokens["mean_attention"].max(), registers.head(10).to_string())
    decomposition_plots.attention_sink(
        tokens, registers, parts.grid, params["n_figure_neurons"], f"{label}: attention sink and register neurons ({n} images)", out["figure"]
    )


# --------------------------------------------------------------------------------------------
# Distribution shift
# --------------------------------------------------------------------------------------------


def shift_spec(params: dict, image_size: int) -> shift.ShiftSpec:
    """The :class:`clipmech.shift.ShiftSpec` of the config's ``shift`` block at the dataset's image size."""
    return shift.ShiftSpec(
        concepts=tuple(params["concepts"]),
        shares=tuple(tuple(row) for row in params["shares"]),
        n_per_split=params["n_per_split"],
        image_size=image_size,
        min_objects=params["min_objects"],
        max_objects=params["max_objects"],
        seed=params["seed"],
    )


def synthesize_shift(directory: str, params: dict, image_size: int) -> None:
    """Render the shift splits (:func:`clipmech.shift.synthesize`) as a Shapes dataset directory."""
    spec = shift_spec(params, image_size)
    shift.save(directory, spec, *shift.synthesize(spec))
    log.info("wrote %d splits x %d images with shares %s of %s", len(spec.shares), spec.n_per_split, spec.shares, spec.concepts)


def monitor_shift(store: str, splits_dir: str, text_path: str, out: dict, params: dict, chunk_size: int, label: str) -> None:
    """Concept scores of the top pairs of each concept across the splits, and their correlations (paper Sec. 5.2)."""
    ds = attnpool_store.open_store(store)
    data = datasets.load(splits_dir)
    _check_images(ds, data, store, splits_dir)
    spec = shift.load_spec(splits_dir)
    parts = attnpool_store.parts(ds)
    s_NHC, y_NE = attnpool_store.pair_scalars(ds, chunk_size)
    text = np.load(text_path)
    scores = np.zeros((data.n_images, len(spec.concepts)))
    for f, concept in enumerate(spec.concepts):
        task = "colour" if concept in shapes.COLOURS else "shape"
        classes, z_KE = _task_text(text, task)
        heads, neurons, _ = text_decomposition.top_pairs_by_text(parts.u_HCE, z_KE[[classes.index(concept)]], params["top_k"])
        scores[:, f] = shift.concept_scores(s_NHC, parts.u_HCE, y_NE, heads[0], neurons[0])
    present = shift.presence(data.objects, spec.concepts, data.n_images)
    splits, correlations = shift.shift_tables(spec, scores, present)
    _write(splits, out["splits"])
    _write(correlations, out["correlations"])
    log.info("shift monitoring:\n%s\n%s", splits.to_string(), correlations.to_string())
    decomposition_plots.shift_monitoring(splits, correlations, f"{label}: concept scores of the top {params['top_k']} pairs", out["figure"])
