"""Description, localisation and interventions of one MiCLIP unit set against its baselines: the stage of
rule ``evaluate_miclip``."""

from __future__ import annotations

import functools
import logging
import tempfile

import numpy as np
import torch

from clipmech.data import datasets, loader, tables
from clipmech.data.concepts import CLASS_KINDS, Concepts
from clipmech.miclip import natural as miclip_natural
from clipmech.miclip import probe_store, units
from clipmech.miclip.encoder import load_encoders
from clipmech.miclip.evaluation import (
    HeldoutRows,
    array_batches,
    evaluate_unit_set,
    heldout_objects,
    neuron_set,
    sae_set,
)
from clipmech.models import catalogue, loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.models.towers import tower
from clipmech.sae.evaluate import class_prompts
from clipmech.sae.latents import token_positions
from clipmech.sae.model import load_sae
from clipmech.stages.embed_miclip_concepts import load_concepts
from clipmech.stages.probe_miclip import load_probe

log = logging.getLogger(__name__)


def evaluate_miclip(
    *,
    model: ModelSpec,
    kind: str,
    dataset_dir: str,
    probe: str,
    concepts: str,
    encoders: str,
    sae: list[str],
    out: dict,
    evaluation: dict,
    k_top: int,
    device: str,
    threads: int,
    acts: str | None = None,
    natural: dict | None = None,
    classifier: str | list | None = None,
) -> None:
    """Evaluate the units of one (model, site, kind) with MiCLIP and its baselines (methods.md Sec. 9).

    Units: the site's channels (``neurons``) or the latents of the SAE checkpoint ``sae[0]`` (``sae``; the list
    ``sae`` is empty for ``neurons``); their image-level activations, maps and typical activations come from
    the probe (rule ``probe_miclip``: its ``image_acts`` and its store of site activations ``acts``, read lazily
    a batch of images or a few units at a time, :mod:`clipmech.miclip.probe_store`), on its held-out images
    (``heldout_images``), which are all this evaluation reads (the encoders trained on the others); the
    interventions preprocess their pixels a chunk of a concept's images at a time.
    Network Dissection needs maps of every patch: it is left out for an SAE that does not read them all.

    ``evaluation``: ``seeds``, ``tau``, ``interventions`` (form -> betas), ``clip_dissect`` (top_k, a, lam),
    ``netdissect`` (quantile, resolution), ``batch_size``. ``k_top``: the top-k images of the ground truth
    (Algorithm 1). Writes ``out`` ``descriptions``, ``localisation``, ``interventions``,
    ``description_accuracy``, ``delta_acc``, ``ablation`` (TSVs, :mod:`clipmech.miclip.tables`; rule
    ``plot_miclip`` draws the figures).

    On a natural-image dataset (methods.md Sec. 9.8; the probe holds ``image_acts``) the units are evaluated
    over the dataset's concepts (:func:`clipmech.data.concepts.concept_matrix`; ``natural["words"]``
    for a captions dataset): descriptions, localisation and description accuracy; Network Dissection is left out
    (no masks). An ``sae`` unit set reads the site's tokens on the held-out photographs again, in batches
    (:func:`clipmech.miclip.evaluation.sae_set`). Delta Acc of a dataset with classes (imagenet, imagefolder) is measured on each class's held-out
    images with the target's zero-shot classifier ``classifier`` (rule ``zero_shot_classifier``, checked against
    the templates ``natural["templates"]``), its photographs decoded per class; a captions dataset has no single
    class per image: ``interventions``, ``delta_acc`` hold no rows and the reason is logged
    (:data:`clipmech.miclip.natural.NO_INTERVENTIONS`).

    Raises
    ------
    ValueError
        For an unknown kind, a Shapes dataset without ``acts``, a Shapes probe on a natural-image dataset, a natural-image
        dataset with classes without its ``classifier``, a probe of another dataset, an input that fails its sha256 check (probe,
        concepts, encoders, SAE: :mod:`clipmech.artefacts`), non-finite encoder or SAE weights, or an SAE of another site or width or that reads
        no patch token.
    """
    torch.set_num_threads(threads)
    if kind not in units.KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; valid kinds are: {', '.join(units.KINDS)}")
    torch_device = loading.resolve_device(device)
    data = datasets.load(dataset_dir)
    probe_data = load_probe(probe)
    if str(probe_data["dataset_sha256"]) != data.spec["sha256"]:
        raise ValueError(f"probe {probe} was computed on another dataset than {dataset_dir} (sha256 differs)")
    site = str(probe_data["site"])
    record = load_encoders(encoders)
    heldout = probe_data["heldout_images"]
    n_prefix, grid = int(probe_data["n_prefix_tokens"]), tuple(int(g) for g in probe_data["grid"])
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    channel_axis = 1 if catalogue.is_resnet(model.architecture) else -1  # ResNet stages: (N, C, h, w)
    # An SAE set's (N, n) image-level activations are spilled to scratch (sae_set), not held in memory.
    with tempfile.TemporaryDirectory(prefix="miclip-sae-") as scratch:
        if miclip_natural.is_natural(data):
            _evaluate_natural(**locals())
            return
        if acts is None:
            raise ValueError(
                f"the evaluation on Shapes dataset {dataset_dir} reads the probe's site activations acts; none given"
            )
        site_acts = probe_store.open_probe_store(acts).isel(image=heldout)  # lazy: read a block at a time
        if kind == "neurons":
            maps = units.NeuronMaps(site_acts, n_prefix, grid)
            unit_set = neuron_set(probe_data["image_acts"][heldout], maps, channel_axis)
        else:
            checkpoint = sae[0] if sae else None
            autoencoder, meta = load_sae(checkpoint)
            if meta["site"] != site or autoencoder.d != site_acts.shape[-1]:
                raise ValueError(
                    f"SAE {checkpoint} is of site {meta['site']} (width {autoencoder.d}), the probe of {site} (width {site_acts.shape[-1]})"
                )
            autoencoder = autoencoder.to(torch_device).eval()
            positions = token_positions(meta["tokens"], site_acts.shape[1], n_prefix)
            unit_set = sae_set(autoencoder, positions, n_prefix, array_batches(site_acts), grid, scratch=scratch)
        results = evaluate_unit_set(
            unit_set,
            model=clip,
            tokenizer=tokenizer,
            pixels_NCHW=lambda indices: loading.preprocess_images(data.images[heldout[indices]], preprocess),
            objects=heldout_objects(data.objects, heldout),
            masks_NHW=HeldoutRows(data.masks, heldout),
            site=site,
            encoders={key: value.numpy() for key, value in record["W"].items()},
            concept_data=load_concepts(concepts),
            reference_images_NE=probe_data["reference_images"][heldout],
            params=evaluation,
            k_top=k_top,
            device=torch_device,
        )
        for key, table in results.items():
            tables.write_table(table, out[key])


def _evaluate_natural(*, kind, data, probe, probe_data, heldout, site, record, clip, tokenizer, **rest) -> None:
    if str(probe_data["vocabulary"]) != miclip_natural.VOCABULARY:
        raise ValueError(
            f"probe {probe} is a Shapes probe, not the probe of natural-image dataset {rest['dataset_dir']}"
        )
    natural = rest["natural"] or {}
    present = miclip_natural.dataset_concepts(data, natural.get("words"))
    concept_data = load_concepts(rest["concepts"])
    if [str(c) for c in concept_data["concepts"]] != list(present.names):
        raise ValueError(f"concept embeddings {rest['concepts']} are not of the concepts of {rest['dataset_dir']}")
    device = rest["torch_device"]
    if kind == "neurons":
        unit_set = neuron_set(probe_data["image_acts"][heldout], None, rest["channel_axis"])
    else:  # the SAE's latents on the held-out photographs' tokens, read in batches (twice)
        checkpoint = rest["sae"][0] if rest["sae"] else None
        autoencoder, meta = load_sae(checkpoint)
        if meta["site"] != site:
            raise ValueError(f"SAE {checkpoint} is of site {meta['site']}, the probe of {site}")
        autoencoder = autoencoder.to(device).eval()
        n_prefix = int(probe_data["n_prefix_tokens"])
        positions = token_positions(meta["tokens"], tower(clip, "visual").n_tokens, n_prefix)
        batches = functools.partial(
            miclip_natural.site_batches,
            clip,
            rest["preprocess"],
            data,
            heldout,
            site,
            batch_size=rest["evaluation"]["batch_size"],
            device=device,
            workers=rest["threads"],
        )
        unit_set = sae_set(autoencoder, positions, n_prefix, batches, scratch=rest["scratch"])
    class_texts, pixels_of = None, None
    if data.spec["kind"] in CLASS_KINDS:
        if not rest["classifier"]:
            raise ValueError(
                f"MiCLIP's Delta Acc on {rest['dataset_dir']} (kind {data.spec['kind']}) classifies its images with "
                "the target's zero-shot classifier (rule zero_shot_classifier's classifier.npz), and none was given"
            )
        path = rest["classifier"] if isinstance(rest["classifier"], str) else rest["classifier"][0]
        weights_EK = zeroshot.load_dataset_classifier(path, rest["model"], data, natural.get("templates"))
        class_texts = {k: v.to(device) for k, v in class_prompts(weights_EK).items()}
        pixels_of = functools.partial(_pixels, data=data, images=heldout, preprocess=rest["preprocess"])
    else:
        log.info(miclip_natural.NO_INTERVENTIONS.format(dataset=rest["dataset_dir"], kind=data.spec["kind"]))
    results = evaluate_unit_set(
        unit_set,
        model=clip,
        tokenizer=tokenizer,
        pixels_NCHW=pixels_of,
        objects=None,
        masks_NHW=None,
        site=site,
        encoders={key: value.numpy() for key, value in record["W"].items()},
        concept_data=concept_data,
        reference_images_NE=probe_data["reference_images"][heldout],
        params=rest["evaluation"],
        k_top=rest["k_top"],
        device=device,
        natural=Concepts(present.present_NF[heldout], present.names, present.source),
        class_texts=class_texts,
    )
    for key, table in results.items():
        tables.write_table(table, rest["out"][key])


def _pixels(indices: np.ndarray, *, data, images: np.ndarray, preprocess) -> torch.Tensor:
    """The photographs ``images[indices]`` of a natural-image dataset through ``preprocess``, (n, 3, S, S)."""
    photos = loader.ManifestImages(data.manifest.iloc[images[indices]], data.root, preprocess)
    try:
        return torch.stack([photos[i][1] for i in range(len(photos))])
    finally:
        photos.close()
