"""Train the offline default model: a small open_clip CLIP on captioned Shapes scenes.

The model organism of the pipeline needs no download: scenes are drawn fresh at every step from the
training stream of the seed (disjoint from the analysis images' stream), captioned with
:func:`clipmech.data.shapes.caption`, passed through a batched copy of the model's eval transform (the one
extraction uses; :func:`clipmech.models.loading.preprocess_square_batch`) and tokenised with open_clip's
tokenizer; the objective is open_clip's ``ClipLoss`` (symmetric InfoNCE). Held-out scenes from a
third stream measure zero-shot accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from tqdm import tqdm

from clipmech import artefacts
from clipmech.data import shapes
from clipmech.models import zeroshot
from clipmech.models.loading import (
    ModelSpec,
    encode_text,
    load_tokenizer,
    preprocess_images,
    preprocess_square_batch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of a pipeline-trained model (the ``train:`` block of a model's config).

    Attributes
    ----------
    steps : int
        Optimiser steps (the budget; deterministic, unlike a time budget).
    batch_size : int
        Scenes per step (and the InfoNCE batch).
    lr, weight_decay : float
        AdamW settings; the learning rate warms up linearly over ``warmup_steps`` and then follows a
        cosine decay to 0.
    warmup_steps : int
    image_size : int
        Side of the rendered scenes in pixels before the model's transform (use the analysis
        dataset's size so training and analysis images go through the same resize).
    p_drop : float
        Probability of leaving an attribute out of a caption (teaches partial prompts).
    min_objects, max_objects : int
        Objects per training scene, drawn uniformly.
    p_twin : float
        Probability that a training scene is followed in its batch by a hard-negative twin (same
        layout, other shapes or swapped colours; :func:`twin_scene`).
    n_heldout : int
        Held-out scenes per zero-shot task (single-object and two-object sets).
    seed : int
    """

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    image_size: int = 224
    p_drop: float = 0.25
    min_objects: int = 1
    max_objects: int = 5
    p_twin: float = 0.5
    n_heldout: int = 300
    seed: int = 0


def twin_scene(rng: np.random.Generator, objects: list[dict]) -> list[dict]:
    """A hard negative for a scene: the same objects in the same places with other shapes, or, for
    scenes of two or more objects, with their colours swapped between objects (half of the time).

    Contrastive training only learns what tells the scenes of a batch apart; colours and positions
    alone almost always do, so without such twins a small CLIP never needs shape or binding.
    """
    twin = [dict(obj) for obj in objects]
    if len(objects) >= 2 and rng.random() < 0.5:
        order = rng.permutation(len(objects))
        while np.array_equal(order, np.arange(len(objects))):
            order = rng.permutation(len(objects))
        for obj, source in zip(twin, order):
            obj["colour"] = objects[source]["colour"]
        return twin
    new_shapes = rng.choice(len(shapes.SHAPES), size=len(objects), replace=False)
    while all(shapes.SHAPES[s] == obj["shape"] for s, obj in zip(new_shapes, objects)):
        new_shapes = rng.choice(len(shapes.SHAPES), size=len(objects), replace=False)
    for obj, s in zip(twin, new_shapes):
        obj["shape"] = shapes.SHAPES[s]
    return twin


def render_batch(
    rng: np.random.Generator, n: int, image_size: int, n_objects: int | list[int], p_twin: float = 0.0
) -> tuple[np.ndarray, list[list[dict]]]:
    """Draw and render ``n`` scenes; ``n_objects`` is a fixed count or a list to draw from.

    With ``p_twin`` > 0, each drawn scene is followed with that probability by its
    :func:`twin_scene` (a hard negative in the same batch).

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8
    scenes : list of object lists (see :func:`clipmech.data.shapes.sample_objects`)
    """
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    scenes: list[list[dict]] = []
    while len(scenes) < n:
        count = n_objects if isinstance(n_objects, int) else int(rng.choice(n_objects))
        scenes.append(shapes.sample_objects(rng, count, image_size))
        if p_twin > 0 and len(scenes) < n and rng.random() < p_twin:
            scenes.append(twin_scene(rng, scenes[-1]))
    for i, objects in enumerate(scenes):
        images[i], _ = shapes.draw_scene(objects, image_size, with_mask=False)
    return images, scenes


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(architecture: str, cfg: TrainConfig, device: str | torch.device = "cpu"):
    """Train a CLIP of an open_clip architecture from random weights on captioned Shapes scenes.

    Returns
    -------
    model : open_clip.CLIP
        Trained, in eval mode.
    preprocess, tokenizer
        As :func:`clipmech.models.loading.load` returns them.
    losses : list of float
        The InfoNCE loss of every step.

    Raises
    ------
    FileNotFoundError
        Before any training, if the architecture's Hugging Face tokenizer (SigLIP's) is neither
        downloadable nor cached (:func:`clipmech.models.loading.load_tokenizer` says where to put it).
    """
    # The tokenizer first: a missing Hugging Face tokenizer fails before the model is built.
    tokenizer = load_tokenizer(ModelSpec(architecture, architecture, None))
    torch.manual_seed(cfg.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=None, device=device)
    loss_fn = open_clip.ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    rng = shapes.stream(cfg.seed, shapes.STREAM_TRAIN)
    counts = list(range(cfg.min_objects, cfg.max_objects + 1))
    losses = []
    model.train()
    for step in tqdm(range(cfg.steps), desc=f"train {architecture}", mininterval=10):
        images, scenes = render_batch(rng, cfg.batch_size, cfg.image_size, counts, cfg.p_twin)
        captions = [shapes.caption(objects, rng, cfg.p_drop) for objects in scenes]
        pixels = preprocess_square_batch(images, model.visual.preprocess_cfg).to(device)
        tokens = tokenizer(captions).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        image_features, text_features, logit_scale = model(pixels, tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 100 == 0:
            log.info("step %d loss %.4f", step, losses[-1])
    model.eval()
    return model, preprocess, tokenizer, losses


@torch.inference_mode()
def evaluate(model, preprocess, tokenizer, n_heldout: int, image_size: int, seed: int, device="cpu") -> dict:
    """Zero-shot accuracy on held-out scenes (a stream disjoint from training and analysis images).

    Colour (6-way), shape (5-way) and position (5-way) on ``n_heldout`` single-object images, and the
    colour-swap binding test on ``n_heldout`` two-object images (chance 0.5); see
    :mod:`clipmech.models.zeroshot` for the prompts.

    Returns
    -------
    dict
        ``{"colour": acc, "shape": acc, "position": acc, "binding_colour_swap": acc, "n_heldout": n}``
        with accuracies in [0, 1].
    """
    rng = shapes.stream(seed, shapes.STREAM_HELDOUT)
    metrics: dict[str, float] = {}
    images, scenes = render_batch(rng, n_heldout, image_size, 1)
    image_emb = torch.cat(
        [
            model.encode_image(preprocess_images(images[i : i + 256], preprocess).to(device))
            for i in range(0, n_heldout, 256)
        ]
    )
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, prompts = zeroshot.attribute_prompts(task)
        truth = np.array([names.index(objects[0][task]) for objects in scenes])
        predicted = zeroshot.classify(image_emb, encode_text(model, tokenizer, prompts, device))
        metrics[task] = float((predicted == truth).mean())
    images, scenes = render_batch(rng, n_heldout, image_size, 2)
    image_emb = torch.cat(
        [
            model.encode_image(preprocess_images(images[i : i + 256], preprocess).to(device))
            for i in range(0, n_heldout, 256)
        ]
    )
    correct, swapped = zip(*(zeroshot.colour_swap_prompts(objects) for objects in scenes))
    preferred = zeroshot.pairwise_preference(
        image_emb,
        encode_text(model, tokenizer, list(correct), device),
        encode_text(model, tokenizer, list(swapped), device),
    )
    metrics["binding_colour_swap"] = float(preferred.mean())
    metrics["n_heldout"] = n_heldout
    return metrics


def train_and_save(
    spec: ModelSpec, cfg: TrainConfig, checkpoint: str | Path, metrics_path: str | Path, losses_path: str | Path
) -> dict:
    """Train ``spec.architecture``, save the checkpoint, and write metrics and the loss curve.

    The checkpoint is ``{"state_dict": ...}``, loadable by open_clip with ``pretrained=<path>``.
    ``metrics_path`` (JSON) holds the zero-shot accuracies, the training settings, the wall time
    and the checkpoint's sha256; ``losses_path`` (TSV) the per-step loss.
    """
    start = time.perf_counter()
    model, preprocess, tokenizer, losses = train(spec.architecture, cfg)
    train_seconds = time.perf_counter() - start
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    # Atomic, a full device named as such; its sha256 goes into metrics.json (models.loading.verify_checkpoint).
    checkpoint_sha256 = artefacts.save_torch(
        checkpoint,
        {"state_dict": model.state_dict(), "architecture": spec.architecture},
        rule="train_clip",
        record=False,
    )
    metrics = evaluate(model, preprocess, tokenizer, cfg.n_heldout, cfg.image_size, cfg.seed)
    log.info("zero-shot metrics: %s", metrics)
    record = {
        "model": spec.name,
        "architecture": spec.architecture,
        "zero_shot": metrics,
        "final_loss": float(np.mean(losses[-20:])),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "train": asdict(cfg),
        "checkpoint_sha256": checkpoint_sha256,
    }
    artefacts.write_text(metrics_path, json.dumps(record, indent=2) + "\n")
    artefacts.write_text(
        losses_path, "step\tloss\n" + "".join(f"{step}\t{loss:.6f}\n" for step, loss in enumerate(losses))
    )
    return record
