"""Causal tracing and activation patching of both towers on Shapes minimal pairs (methods.md Sec. 8): the stage of
rule ``patch_components``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.data import datasets
from clipmech.data.tables import write_table
from clipmech.models import loading
from clipmech.models.towers import tower
from clipmech.patching import corruptions, tracing

log = logging.getLogger(__name__)

#: Corruptions that are Shapes minimal pairs (the dataset's pair kinds); the others corrupt embeddings.
MINIMAL_PAIRS = ("colour", "shape", "position", "binding")


def _d_mlp(info) -> int | None:
    if info.kind == "resnet":
        return None
    mlp = info.blocks[0].mlp
    return (mlp.c_fc if hasattr(mlp, "c_fc") else mlp.fc1).out_features


def _pairs_of(pairs: pd.DataFrame, corruption: str, n_pairs: int) -> pd.DataFrame:
    """The pairs of one corruption: its minimal pairs, or for an embedding corruption the binding pairs'
    clean images with their colour-swapped foil (both runs start from the clean image)."""
    kind = corruption if corruption in MINIMAL_PAIRS else "binding"
    chosen = pairs[pairs["kind"] == kind].sort_values("pair_id").head(n_pairs).reset_index(drop=True)
    if chosen.empty:
        raise ValueError(f"the pairs dataset has no {kind!r} pairs; its kinds are {sorted(pairs['kind'].unique())}")
    if corruption not in MINIMAL_PAIRS:
        chosen = chosen.assign(corrupt=chosen["clean"])
    return chosen


def _tower_run(model, tower_name, *, chosen, corruption, pixels, tokenizer, scale, params, stds, device):
    """The :class:`clipmech.patching.tracing.TowerRun` of one tower on one corruption's pairs, or None when no
    pair is usable (text tower: the caption and foil must end on the same token)."""
    info = tower(model, tower_name)
    with torch.inference_mode():
        caption_QE = model.encode_text(tokenizer(list(chosen["caption"])).to(device)).float()
        foil_QE = model.encode_text(tokenizer(list(chosen["foil"])).to(device)).float()
    embedding = corruption not in MINIMAL_PAIRS
    if tower_name == "visual":
        clean = pixels[torch.tensor(chosen["clean"].to_list())]
        corrupt = pixels[torch.tensor(chosen["corrupt"].to_list())]
        metric = tracing.vision_metric(caption_QE, foil_QE, scale)
        words = None
        n_positions = info.n_tokens
    else:
        clean = tokenizer(list(chosen["caption"])).to(device)
        corrupt = clean if embedding else tokenizer(list(chosen["foil"])).to(device)
        special = torch.unique(tokenizer([""]))
        words = corruptions.word_positions(clean, special)
        same_end = (words == corruptions.word_positions(corrupt, special)).all(-1)
        if not bool(same_end.all()):
            log.info("%s, text: %d of %d pairs whose foil has another number of tokens left out", corruption,
                     int((~same_end).sum()), len(same_end))  # fmt: skip
        keep = same_end.cpu().numpy()
        if not keep.any():
            return None, keep
        chosen = chosen[keep]
        clean, corrupt, caption_QE, foil_QE = (
            clean[same_end],
            corrupt[same_end],
            caption_QE[same_end],
            foil_QE[same_end],
        )
        with torch.inference_mode():
            image_QE = model.encode_image(pixels[torch.tensor(chosen["clean"].to_list())]).float()
        metric = tracing.text_metric(image_QE, foil_QE, scale)
        words = words[same_end]
        n_positions = int(corruptions.pooled_positions(model, clean).max()) + 1
    corruption_hook = None
    if embedding:
        corruption_hook = corruptions.EmbeddingCorruption(
            model, tower_name, corruption, std=params["noise_scale"] * stds[tower_name], seed=params["seed"],
            words_QT=words,
        )  # fmt: skip
    run = tracing.TowerRun(
        model=model, info=info, forward=model.encode_image if tower_name == "visual" else model.encode_text,
        metric=metric, clean=clean, corrupt=corrupt, corruption=corruption_hook, n_positions=n_positions,
        d_mlp=_d_mlp(info), batch_size=params["batch_size"],
    )  # fmt: skip
    return run, np.ones(len(chosen), dtype=bool) if tower_name == "visual" else keep


def patch_components(
    *, name: str, model_entry: dict, dataset_dir: str, out: dict, params: dict, device: str, threads: int
) -> None:
    """Causal tracing (methods.md Sec. 8) of both towers under every corruption in ``params["corruptions"]``, on the first ``params["n_pairs"]`` pairs of each kind of a pairs dataset.

    Writes ``out["recovery"]`` (one row per corruption, tower, direction and component: R and Delta logit
    with bootstrap 95 % intervals, :func:`clipmech.patching.tracing.trace`), ``out["circuit"]`` and
    ``out["circuit_summary"]`` (:func:`clipmech.patching.tracing.circuit`, denoising) and ``out["runs"]``
    (per corruption, tower and pair: m_clean, m_corrupt, kept).

    Raises
    ------
    ValueError
        If the dataset is not a pairs dataset (it has no pair table) or lacks a kind a corruption needs.
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    if data.pairs is None:
        raise ValueError(
            f"dataset {dataset_dir} is of kind {data.spec['kind']!r}; causal tracing needs a 'pairs' dataset"
        )
    torch_device = loading.resolve_device(device)
    model, preprocess, tokenizer = loading.load(loading.model_spec({name: model_entry}, name), torch_device)
    pixels = loading.preprocess_images(data.images, preprocess).to(torch_device)
    scale = float(model.logit_scale.detach().exp())
    base = data.pairs.drop_duplicates("clean")
    stds = {
        "visual": corruptions.embedding_std(model, "visual", pixels[torch.tensor(base["clean"].to_list())]),
        "text": corruptions.embedding_std(
            model, "text", tokenizer(list(base["caption"])).to(torch_device), torch.unique(tokenizer([""]))
        ),
    }
    log.info("logit scale %.3f; embedding std: %s", scale, stds)
    tables = {"recovery": [], "circuit": [], "circuit_summary": [], "runs": []}
    for corruption in params["corruptions"]:
        chosen = _pairs_of(data.pairs, corruption, params["n_pairs"])
        for tower_name in ("visual", "text"):
            run, used = _tower_run(
                model, tower_name, chosen=chosen, corruption=corruption, pixels=pixels, tokenizer=tokenizer,
                scale=scale, params=params, stds=stds, device=torch_device,
            )  # fmt: skip
            labels = {"corruption": corruption, "tower": tower_name}
            if run is None:
                log.info("%s, %s: no usable pair, skipped", corruption, tower_name)
                continue
            base_run = run.baseline()
            keep = run.kept(params["min_effect"])
            tables["runs"].append(
                pd.DataFrame(
                    {
                        **labels,
                        "pair_id": chosen["pair_id"].to_numpy()[used],
                        "m_clean": base_run.m_clean_Q,
                        "m_corrupt": base_run.m_corrupt_Q,
                        "kept": keep,
                    }
                )
            )
            families = params["families"]["resnet" if run.info.kind == "resnet" else "transformer"]
            directions = params["directions"]
            stats = {"min_effect": params["min_effect"], "n_resamples": params["n_bootstrap"], "seed": params["seed"]}
            recovery, single = tracing.trace(run, families, directions, **stats)
            tables["recovery"].append(recovery.assign(**labels))
            curve, summary = tracing.circuit(
                run, single, threshold=params["circuit"]["threshold"], n_points=params["circuit"]["n_points"],
                n_random=params["circuit"]["n_random"], **stats,
            )  # fmt: skip
            tables["circuit"].append(curve.assign(**labels))
            tables["circuit_summary"].append(summary.assign(**labels))
            log.info(
                "%s, %s: %d of %d pairs kept; greedy circuit needs %s of %d path components",
                corruption, tower_name, int(keep.sum()), keep.size,
                summary.loc[summary["order"] == "greedy", "fraction_needed"].iloc[0], summary["n_total"].iloc[0],
            )  # fmt: skip
    for key, frames in tables.items():
        table = pd.concat(frames, ignore_index=True)
        front = ["corruption", "tower"]
        write_table(table[front + [c for c in table.columns if c not in front]], out[key])
