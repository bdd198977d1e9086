"""Grad-CAM of text prompts and the energy pointing game (methods.md Sec. 4): the stage of rule ``gradcam_binding``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from clipmech import artefacts
from clipmech.analyses import binding
from clipmech.analyses import gradcam as gradcam_analysis
from clipmech.data import datasets, tables
from clipmech.models import loading
from clipmech.models.loading import ModelSpec

log = logging.getLogger(__name__)

#: The rule that writes the figure's examples (named when the file fails its sha256 check).
RULE = "gradcam_binding"


def gradcam_binding(
    *,
    model: ModelSpec,
    dataset_dir: str,
    out: dict,
    gradcam: dict,
    seed: int,
    device: str,
    threads: int,
) -> None:
    """Grad-CAM maps (methods.md Sec. 4) of the correct, swapped and absent prompts
    (:func:`clipmech.analyses.binding.gradcam_prompts`) on ``gradcam["n_images"]`` seeded images with >= 2
    objects; writes the per-prompt pointing game (``out["pointing"]``), its summary per prompt type
    (``out["summary"]``) and the figure's rows (``out["examples"]``, :func:`load_examples`; rule
    ``plot_gradcam`` draws them): images chosen by :func:`clipmech.analyses.binding.select_examples` on
    S(correct) - S(swapped) among the images whose three maps are not all-zero, with their maps, prompts and
    scores. ``gradcam`` is the config's ``gradcam`` section; ``model`` is loaded on ``device``.

    Maps are computed at the model's input resolution and resized bilinearly to the dataset's
    image (and mask) size. The images are square, so the model's resize and centre crop is a
    uniform scaling and the resized map lines up with the mask.
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    size = data.masks.shape[1:]
    if size[0] != size[1]:
        raise ValueError(f"Grad-CAM maps are aligned to square images; dataset {dataset_dir} has {size}")
    rng = np.random.default_rng(seed)
    objects = data.objects.sort_values(["image_id", "object_id"])
    eligible = np.sort(objects.loc[objects["n_objects"] >= 2, "image_id"].unique())
    if eligible.size == 0:
        raise ValueError(f"Grad-CAM binding check needs images with at least 2 objects; dataset {dataset_dir} has none")
    chosen = np.sort(rng.choice(eligible, size=min(gradcam["n_images"], eligible.size), replace=False))
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    rows, maps, images = [], [], []
    for image_id in chosen:
        scene = objects[objects["image_id"] == image_id][["colour", "shape"]].to_dict("records")
        choice = binding.gradcam_prompts(scene, rng)
        if choice is None:
            log.info("image %d: no valid correct/swapped/absent prompt triple, skipped", image_id)
            continue
        prompts = [choice["prompts"][t] for t in binding.GRADCAM_PROMPT_TYPES]
        pixels = loading.preprocess_images(data.images[image_id : image_id + 1], preprocess).to(torch_device)
        result = gradcam_analysis.gradcam(
            clip,
            pixels,
            loading.encode_text(clip, tokenizer, prompts, torch_device),
            target=gradcam["target"],
            score=gradcam["score"],
        )
        maps_PHW = F.interpolate(torch.from_numpy(result.maps_NPHW), size=size, mode="bilinear", align_corners=False)[
            0
        ].numpy()
        for p, prompt_type in enumerate(binding.GRADCAM_PROMPT_TYPES):
            rows.append(
                {
                    "image_id": int(image_id),
                    "n_objects": len(scene),
                    "prompt_type": prompt_type,
                    "prompt": prompts[p],
                    "target_object": choice["target"],
                    "lure_object": choice["lure"],
                    "score": float(result.scores_NP[0, p]),
                    **gradcam_analysis.pointing_row(
                        maps_PHW[p], data.masks[image_id], choice["target"], choice["lure"]
                    ),
                }
            )
        maps.append(maps_PHW)
        images.append(image_id)
    if not rows:
        raise ValueError(f"no image of {dataset_dir} admits a correct/swapped/absent prompt triple")
    pointing = pd.DataFrame(rows)
    summary = gradcam_analysis.summarise(pointing)
    for key, table in (("pointing", pointing), ("summary", summary)):
        tables.write_table(table, out[key])
    scores = pointing.pivot(index="image_id", columns="prompt_type", values="score").loc[images]
    margin_N = (scores["correct"] - scores["swapped"]).to_numpy()
    log.info(
        "Grad-CAM at %s (%s) on %d images; correct prompt preferred over swapped on %.2f of them:\n%s",
        result.layer,
        gradcam["score"],
        len(images),
        np.mean(margin_N > 0),
        summary.to_string(),
    )
    # an image with an all-zero map (ReLU of a negative combination everywhere) shows nothing
    has_zero_map = (pointing.groupby("image_id")["total_energy"].min().loc[images] == 0).to_numpy()
    index, failed = binding.select_examples(np.where(has_zero_map, np.nan, margin_N), gradcam["n_figure_rows"])
    prompts_NP = [pointing.loc[pointing["image_id"] == images[i], "prompt"].tolist() for i in index]
    artefacts.save_npz(
        out["examples"],
        rule=RULE,
        images=np.asarray(data.images[np.asarray(images)[index]]),
        maps=np.stack([maps[i] for i in index]),
        prompts=np.array(prompts_NP, dtype=str),
        scores=scores.loc[np.asarray(images)[index], list(binding.GRADCAM_PROMPT_TYPES)].to_numpy(),
        failed=np.asarray(failed, dtype=bool),
        layer=np.array(result.layer),
        score=np.array(gradcam["score"]),
    )


def load_examples(path: str) -> dict:
    """The figure's rows that :func:`gradcam_binding` wrote, checked against their sha256 record
    (:func:`clipmech.artefacts.load_npz`): ``images`` (N, H, W, 3) uint8, ``maps`` (N, P, H, W) at the image
    resolution, ``prompts`` (N lists of P str), ``scores`` (N, P) S_t, ``failed`` (N,) bool, the hooked
    ``layer`` and the ``score`` (str) of the Grad-CAM."""
    with artefacts.load_npz(path, rule=RULE) as npz:
        return {
            "images": npz["images"],
            "maps": npz["maps"],
            "prompts": [[str(prompt) for prompt in row] for row in npz["prompts"]],
            "scores": npz["scores"],
            "failed": npz["failed"],
            "layer": str(npz["layer"]),
            "score": str(npz["score"]),
        }
