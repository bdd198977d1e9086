"""Description, localisation and interventions of one MiCLIP unit set against its baselines: the stage of
rule ``evaluate_miclip``."""

from __future__ import annotations

import torch

from clipmech.data import datasets, tables
from clipmech.miclip import units
from clipmech.miclip.encoder import load_encoders
from clipmech.miclip.evaluation import evaluate_unit_set, heldout_objects, neuron_set, sae_set
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.sae.latents import token_positions
from clipmech.sae.model import load_sae
from clipmech.stages.embed_miclip_concepts import load_concepts
from clipmech.stages.probe_miclip import load_probe


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
) -> None:
    """Evaluate the units of one (model, site, kind) with MiCLIP and its baselines (methods.md Sec. 9).

    Units: the site's channels (``neurons``) or the latents of the SAE checkpoint ``sae[0]`` (``sae``; the list
    ``sae`` is empty for ``neurons``); their image-level activations, maps and typical activations come from
    the probe (rule ``probe_miclip``), on its held-out images (``heldout_images``), which are all this
    evaluation reads (the encoders trained on the others).
    Network Dissection needs maps of every patch: it is left out for an SAE that does not read them all.

    ``evaluation``: ``seeds``, ``tau``, ``interventions`` (form -> betas), ``clip_dissect`` (top_k, a, lam),
    ``netdissect`` (quantile, resolution), ``batch_size``. ``k_top``: the top-k images of the ground truth
    (Algorithm 1). Writes ``out`` ``descriptions``, ``localisation``, ``interventions``,
    ``description_accuracy``, ``delta_acc``, ``ablation`` (TSVs, :mod:`clipmech.miclip.tables`; rule
    ``plot_miclip`` draws the figures).

    Raises
    ------
    ValueError
        For an unknown kind, a probe of another dataset, an input that fails its sha256 check (probe,
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
    site_acts = probe_data["site_acts"][heldout]
    n_prefix, grid = int(probe_data["n_prefix_tokens"]), tuple(int(g) for g in probe_data["grid"])
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    if kind == "neurons":
        unit_set = neuron_set(site_acts, n_prefix, grid)
    else:
        checkpoint = sae[0] if sae else None
        autoencoder, meta = load_sae(checkpoint)
        if meta["site"] != site or autoencoder.d != site_acts.shape[-1]:
            raise ValueError(
                f"SAE {checkpoint} is of site {meta['site']} (width {autoencoder.d}), the probe of {site} (width {site_acts.shape[-1]})"
            )
        autoencoder = autoencoder.to(torch_device).eval()
        positions = token_positions(meta["tokens"], site_acts.shape[1], n_prefix)
        unit_set = sae_set(autoencoder, positions, site_acts, n_prefix, grid)
    results = evaluate_unit_set(
        unit_set,
        model=clip,
        tokenizer=tokenizer,
        pixels_NCHW=loading.preprocess_images(data.images[heldout], preprocess),
        objects=heldout_objects(data.objects, heldout),
        masks_NHW=data.masks[heldout],
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
