"""Training-free segmentation of PASCAL Context-59 with the reference protocol: the stage of rule ``segment_pascal_context``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clipmech.data import datasets, loader, tables
from clipmech.decomposition import miou, pool, segmentation, wordlist
from clipmech.hooks.attnpool import capture_attnpool
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.models.towers import tower

log = logging.getLogger(__name__)


def segment_pascal_context(
    *, model: ModelSpec, out: dict, dataset_dir: str, pascal_context: dict, device: str, threads: int, label: str
) -> None:
    """PASCAL Context-59 mIoU of every method with mmseg's protocol (methods.md Sec. 5).

    ``dataset_dir`` is a dataset of kind ``pascal_context`` (rule ``index_images``): every image of its
    manifest is read (its bytes checked against the manifest's sha256) with its label mask. Each image is
    resized keeping its aspect ratio to fit ``scale`` (long, short) (shorter side 384 for RN50x16), cut
    into ``crop_size`` windows at ``stride`` (mmseg slide inference), each window's logits computed by the
    decomposition and averaged, resized to the label's size, and argmaxed over the dataset's 59 classes;
    labels go through ``reduce_zero_label`` (background not scored). MaskCLIP logits are cosines times
    ``logit_scale`` (averaging logits, as mmseg does, the argmax does not depend on it); the pair method
    uses the top ``top_k`` pairs per class. ``pascal_context`` is the config's
    ``decomposition.pascal_context`` section without its ``dataset`` (the protocol).

    Raises
    ------
    ValueError
        If the dataset is not of kind ``pascal_context``, the model is not a square CLIP-ResNet, ``crop_size``
        is not its input size, an image's bytes differ from the manifest's sha256 or a mask's size from its
        image's.
    """
    data = datasets.load(dataset_dir)
    if data.spec["kind"] != "pascal_context":
        raise ValueError(
            f"decomposition.pascal_context.dataset: {dataset_dir} is a dataset of kind {data.spec['kind']}; "
            "PASCAL Context-59 segmentation needs one of kind pascal_context"
        )
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    info = tower(clip, "visual")
    image_size, grid = info.image_size[0], info.grid
    if not info.has_attnpool or info.image_size[1] != image_size:
        raise ValueError(
            f"{model.name}: Pascal Context segmentation needs a square CLIP-ResNet; its vision tower is {info}"
        )
    if pascal_context["crop_size"] != image_size:
        raise ValueError(
            f"crop_size {pascal_context['crop_size']} must equal the model's input size {image_size} (its positional embedding is fixed)"
        )
    normalize = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    weights = pool.attnpool_weights(clip.visual.attnpool)
    u_HCE, bias_E = pool.neuron_head_directions(weights), pool.output_bias(weights)
    h, c, _ = u_HCE.shape
    classes = tuple(data.classes["name"])
    z_KE = wordlist.embed_texts(clip, tokenizer, classes, len(classes), torch_device).astype(np.float64)
    heads_Kk, neurons_Kk, _ = pool.top_pairs_by_text(u_HCE, z_KE, min(pascal_context["top_k"], h * c))
    w_KHC = segmentation.pair_weights(heads_Kk, neurons_Kk, h, c)
    # RGB uint8 (H, W, 3) of every image, in manifest order, its bytes checked against the manifest.
    images = loader.ManifestImages(data.manifest, data.root, np.asarray, verify=True)
    masks = [data.root / mask for mask in data.manifest["mask"]]
    confusions = {method: 0 for method in segmentation.METHODS}

    def crop_logits(crop_3SS: torch.Tensor) -> dict[str, np.ndarray]:
        cap = capture_attnpool(clip, crop_3SS[None].to(torch_device))
        x_NTC, alpha_NHT = cap.x_NTC.double().cpu().numpy(), cap.alpha_NHT.double().cpu().numpy()
        logits = {}
        for method in segmentation.METHODS:
            token = segmentation.token_logits(x_NTC, alpha_NHT, weights, u_HCE, bias_E, z_KE, w_KHC, method)
            scale = pascal_context["logit_scale"] if method == "maskclip" else 1.0
            logits[method] = scale * segmentation.upsample(token, grid, (image_size, image_size))[0]
        return logits

    for i, mask in enumerate(masks):
        _, image = images[i]
        gt = segmentation.read_label_mask(mask, image.shape[:2])
        height, width = segmentation.rescale_size(*gt.shape, tuple(pascal_context["scale"]))
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        pixels = normalize(torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0)
        gt_scored = miou.reduce_zero_label(gt)
        for method, logits_KHW in segmentation.slide_logits(
            pixels, pascal_context["crop_size"], pascal_context["stride"], crop_logits
        ).items():
            full_KHW = segmentation.upsample(logits_KHW.reshape(1, len(classes), -1), (height, width), gt.shape)[0]
            confusions[method] = confusions[method] + miou.confusion_matrix(
                full_KHW.argmax(axis=0), gt_scored, len(classes)
            )
        log.info("PASCAL Context image %d/%d done", i + 1, len(masks))
    miou_rows, iou_rows = [], []
    for method, cm in confusions.items():
        miou_rows.append(
            {"method": method, "miou": miou.mean_iou(cm), "n_images": len(masks), "top_k": int(w_KHC[0].sum())}
        )
        iou_rows += [
            {"method": method, "class": name, "iou": v} for name, v in zip(classes, miou.iou_from_confusion(cm))
        ]
    miou_table = pd.DataFrame(miou_rows)
    tables.write_table(miou_table, out["miou"])
    tables.write_table(pd.DataFrame(iou_rows), out["iou"])
    log.info("%s PASCAL Context-59 mIoU:\n%s", label, miou_table.to_string())
