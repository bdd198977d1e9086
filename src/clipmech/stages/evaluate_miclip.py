"""Description, localisation and interventions of one MiCLIP unit set against its baselines: the stage of
rule ``evaluate_miclip``."""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from clipmech.data import datasets, shapes, tables
from clipmech.figures import miclip as figures
from clipmech.miclip import baselines, evaluation, interventions, units
from clipmech.miclip import tables as miclip_tables
from clipmech.models import loading
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.sae import latents
from clipmech.sae.model import load_sae

log = logging.getLogger(__name__)


def evaluate_miclip(
    *,
    name: str,
    model_entry: dict,
    kind: str,
    dataset_dir: str,
    probe: str,
    concepts: str,
    encoders: str,
    sae: str | None,
    out: dict,
    params: dict,
    k_top: int,
    label: str,
    device: str,
    threads: int,
) -> None:
    """Evaluate the units of one (model, site, kind) with MiCLIP and its baselines (methods.md Sec. 9).

    Units: the site's channels (``neurons``) or the latents of the SAE checkpoint ``sae`` (``sae``); their
    image-level activations, maps and typical activations come from the probe (rule ``probe_miclip``).
    Network Dissection needs maps of every patch: it is left out for an SAE that does not read them all.

    ``params``: ``seeds``, ``tau``, ``interventions`` (form -> betas), ``clip_dissect`` (top_k, a, lam),
    ``netdissect`` (quantile, resolution), ``batch_size``. ``k_top``: the top-k images of the ground truth
    (Algorithm 1). Writes ``out`` ``descriptions``, ``localisation``, ``interventions``,
    ``description_accuracy``, ``delta_acc``, ``ablation`` (TSVs, :mod:`clipmech.miclip.tables`) and the
    figures ``delta_figure``, ``description_figure``.

    Raises
    ------
    ValueError
        For an unknown kind, a probe of another dataset, or an SAE of another site or width.
    """
    torch.set_num_threads(threads)
    if kind not in units.KINDS:
        raise ValueError(f"unknown unit kind {kind!r}; valid kinds are: {', '.join(units.KINDS)}")
    torch_device = loading.resolve_device(device)
    data = datasets.load(dataset_dir)
    probe_data = np.load(probe)
    if str(probe_data["dataset_sha256"]) != data.spec["sha256"]:
        raise ValueError(f"probe {probe} was computed on another dataset than {dataset_dir} (sha256 differs)")
    site = str(probe_data["site"])
    concept_data = np.load(concepts)
    record = torch.load(encoders, weights_only=False)
    weights = {key: value.numpy() for key, value in record["W"].items()}
    seeds = [int(s) for s in params["seeds"]]
    tau = int(params["tau"])
    site_acts = probe_data["site_acts"]
    n_prefix, grid = int(probe_data["n_prefix_tokens"]), tuple(int(g) for g in probe_data["grid"])
    model, preprocess, tokenizer = loading.load(loading.model_spec({name: model_entry}, name), torch_device)
    channel_axis = 1 if site_acts.ndim == 4 else -1

    if kind == "neurons":
        acts_NU = units.neuron_image_acts(site_acts)
        maps = units.neuron_maps(site_acts, n_prefix, grid)
        typical_U = units.typical_activation(acts_NU)
        embed = functools.partial(units.neuron_embeddings, typical_U=typical_U)
        make_edit = functools.partial(_neuron_edit, typical_U=typical_U, channel_axis=channel_axis)
    else:
        autoencoder, meta = load_sae(sae)
        if meta["site"] != site or autoencoder.d != site_acts.shape[-1]:
            raise ValueError(
                f"SAE {sae} is of site {meta['site']} (width {autoencoder.d}), the probe of {site} (width {site_acts.shape[-1]})"
            )
        autoencoder = autoencoder.to(torch_device).eval()
        positions = latents.token_positions(meta["tokens"], site_acts.shape[1], n_prefix)
        latents_NTn = latents.token_latents(autoencoder, site_acts, positions, 64)
        acts_NU = latents_NTn.mean(axis=1, dtype=np.float64)
        maps = (
            units.sae_maps(latents_NTn, positions, n_prefix, grid)
            if (positions >= n_prefix).sum() == grid[0] * grid[1]
            else None
        )
        typical_U = units.typical_activation(acts_NU)
        W_dec = autoencoder.W_dec.detach().cpu().double().numpy()
        embed = functools.partial(units.latent_embeddings, W_dec_Dn=W_dec, typical_U=typical_U)
        make_edit = functools.partial(_sae_edit, sae=autoencoder, positions=positions, typical_U=typical_U)
    n_units = acts_NU.shape[1]
    counts_NF = shapes.feature_counts(data.objects, data.n_images)
    present_NF = counts_NF > 0
    iou_UF = None
    if maps is not None:
        resolution = params["netdissect"]["resolution"]
        masks = baselines.concept_masks(data.masks, data.objects, resolution)
        iou_UF = baselines.netdissect_iou(maps, masks, quantile=params["netdissect"]["quantile"])
    words = [str(w) for w in concept_data["words"]]
    scores = evaluation.method_scores(
        acts_NU=acts_NU,
        embed=embed,
        encoders=weights,
        seeds=seeds,
        concept_CE=concept_data["concept_embeddings"],
        word_AE=concept_data["word_embeddings"],
        reference_images_NE=probe_data["reference_images"],
        present_NF=present_NF,
        iou_UF=iou_UF,
        clip_dissect=params["clip_dissect"],
        tau=tau,
    )
    descriptions = evaluation.description_table(scores, tau, words)
    sets = evaluation.unit_sets(scores, tau, n_units)
    localisation = evaluation.localisation_table(sets)
    log.info("%s %s at %s: %d units, %d method x seed unit sets", name, kind, site, n_units, len(sets))

    truth_U = baselines.ground_truth(acts_NU, counts_NF, k_top)
    per_seed = miclip_tables.description_accuracy(
        descriptions,
        truth_U,
        list(shapes.FEATURES),
        concept_data["concept_embeddings"],
        {w: i for i, w in enumerate(words)},
        concept_data["word_embeddings"],
    )
    description_summary = miclip_tables.summarise_descriptions(per_seed)
    log.info("description accuracy:\n%s", description_summary.to_string())

    pixels = loading.preprocess_images(data.images, preprocess)
    texts = attribute_prompt_embeddings(model, tokenizer, torch_device)
    intervention_rows = evaluation.intervention_table(
        model=model,
        pixels_NCHW=pixels,
        present_NF=present_NF,
        texts=texts,
        sets=sets,
        make_edit=make_edit,
        site=site,
        forms=params["interventions"],
        batch_size=params["batch_size"],
        device=torch_device,
    )
    deltas = miclip_tables.delta_table(intervention_rows, seeds)
    log.info("Delta Acc:\n%s", deltas.to_string())
    ablation = miclip_tables.ablation_table(description_summary, deltas)

    tables.write_table(descriptions, out["descriptions"])
    tables.write_table(localisation, out["localisation"])
    tables.write_table(intervention_rows, out["interventions"])
    tables.write_table(description_summary, out["description_accuracy"])
    tables.write_table(deltas, out["delta_acc"])
    tables.write_table(ablation, out["ablation"])
    figures.delta_bars(deltas, f"{label}: Delta Acc of the top-{tau} {kind} per concept", out["delta_figure"])
    figures.description_bars(description_summary, f"{label}: {kind} descriptions", out["description_figure"])


def _neuron_edit(copies, *, typical_U, channel_axis):
    return interventions.neuron_copies(copies, typical_U, channel_axis)


def _sae_edit(copies, *, sae, positions, typical_U):
    return interventions.sae_copies(sae, positions, copies, typical_U)
