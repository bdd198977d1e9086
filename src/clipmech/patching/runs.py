"""Causal tracing of both towers on a pair table (methods.md Sec. 8): the tower runs of each corruption and
the tables of every run.

A pair table is a Shapes pairs dataset's (:func:`clipmech.data.pairs.synthesize`) or the image-caption pairs of
a captions dataset with their foils (:func:`clipmech.data.foils.caption_pairs`, kind ``caption``). A corruption
is a Shapes minimal pair kind (:data:`MINIMAL_PAIRS`: the pairs dataset's ``colour``, ``shape``, ``position``
and ``binding`` pairs, clean and corrupted images and captions) or an embedding corruption
(:data:`clipmech.patching.corruptions.CORRUPTIONS`), which runs on the table's pairs of the first of
:data:`EMBEDDING_PAIRS` it holds: the binding pairs' clean images with their colour-swapped foil, or the
images with their caption and its foil; both runs start from the clean input. The vision tower's metric scores each image
against its caption and foil (:func:`clipmech.patching.tracing.vision_metric`); the text tower's scores each
caption against the clean image (:func:`clipmech.patching.tracing.text_metric`), on the pairs whose caption
and foil have the same word positions (the others are left out).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from clipmech.data import foils
from clipmech.data.concepts import caption_concept_names
from clipmech.data.foils import CAPTION_PAIR_KIND
from clipmech.models.precision import autocast
from clipmech.models.towers import tower
from clipmech.patching import corruptions, engine, measures, tracing

log = logging.getLogger(__name__)

#: Corruptions that are Shapes minimal pairs (the dataset's pair kinds); the others corrupt embeddings.
MINIMAL_PAIRS = ("colour", "shape", "position", "binding")
#: The pair kinds an embedding corruption runs on, the first a table holds: Shapes binding pairs, image-caption pairs.
EMBEDDING_PAIRS = ("binding", CAPTION_PAIR_KIND)
#: The tables :func:`trace_pairs` can return, in the order it returns them.
TABLES = ("recovery", "circuit", "circuit_summary", "circuit_paths", "circuit_paths_summary", "runs")
#: The tables it returns unless asked: all but the path view of circuit sparsity.
DEFAULT_TABLES = ("recovery", "circuit", "circuit_summary", "runs")


def pairs_of(pairs: pd.DataFrame, corruption: str, n_pairs: int) -> pd.DataFrame:
    """The first ``n_pairs`` pairs (by ``pair_id``) of one corruption: its minimal pairs, or for an embedding
    corruption the pairs of the first kind of :data:`EMBEDDING_PAIRS` the table holds (the binding pairs' clean
    images with their colour-swapped foil, or image-caption pairs with their foil), ``corrupt`` = ``clean``.

    Raises
    ------
    ValueError
        If the pair table has no pair of the kind the corruption needs (the message lists its kinds).
    """
    held = set(pairs["kind"])
    kind = corruption if corruption in MINIMAL_PAIRS else next((k for k in EMBEDDING_PAIRS if k in held), "binding")
    chosen = pairs[pairs["kind"] == kind].sort_values("pair_id").head(n_pairs).reset_index(drop=True)
    if chosen.empty:
        raise ValueError(f"the pair table has no {kind!r} pairs; its kinds are {sorted(held)}")
    if corruption not in MINIMAL_PAIRS:
        chosen = chosen.assign(corrupt=chosen["clean"])
    return chosen


def caption_pair_table(data, foil: dict, words: Sequence[str] | None, *, n_pairs: int, seed: int, tokenizer):
    """The image-caption pairs of a captions dataset with their foils (methods.md Sec. 8.1): the first
    ``n_pairs`` images whose first caption has a word of ``foil["kind"]`` (:func:`clipmech.data.foils.caption_pairs`),
    the replacement chosen so that the foil has as many word tokens as the caption under ``tokenizer`` where a
    replacement allows it. Logs how many images were left out.

    Parameters
    ----------
    data : clipmech.data.datasets.ImageDataset
        A captions dataset (its ``manifest``, ``classes``, ``spec``).
    foil : dict
        ``patching.foil``: ``kind`` (``object``: the dataset's concept nouns,
        :func:`clipmech.data.concepts.caption_concept_names`, COCO categories else ``words``; ``attribute``:
        ``attributes``) and ``attributes``.
    words : sequence of str or None
        The dataset's concept words (``datasets.<name>.words``).
    n_pairs, seed : int
    tokenizer : callable
        The model's open_clip tokenizer: texts -> int64 (N, T).

    Returns
    -------
    pandas.DataFrame
        As :func:`clipmech.data.foils.caption_pairs`.

    Raises
    ------
    ValueError
        For an unknown ``foil["kind"]``, a dataset without concept nouns (``object``), fewer than 2 words of the
        kind, or when no image's first caption has a word of the kind (the message names the kind and its words).
    """
    if foil["kind"] not in foils.FOIL_KINDS:
        raise ValueError(f"unknown foil kind {foil['kind']!r}; valid: {', '.join(foils.FOIL_KINDS)}")
    vocabulary = caption_concept_names(data, words) if foil["kind"] == "object" else tuple(foil["attributes"])
    special = torch.unique(tokenizer([""]))

    def n_tokens(texts: Sequence[str]) -> np.ndarray:
        return corruptions.word_positions(tokenizer(list(texts)), special).sum(-1).numpy()

    pairs, n_left_out = foils.caption_pairs(data.manifest, vocabulary, n_pairs, seed=seed, n_tokens=n_tokens)
    shown = ", ".join(vocabulary[:20]) + (", ..." if len(vocabulary) > 20 else "")
    if pairs.empty:
        raise ValueError(
            f"no image's first caption holds a word of foil kind {foil['kind']!r} ({shown}): no caption to foil"
        )
    log.info(
        "%d image-caption pairs with a foil swapping one %s word (%d words: %s); %d of the %d images before the last "
        "pair left out, their first caption having no such word to swap",
        len(pairs), foil["kind"], len(vocabulary), shown, n_left_out, n_left_out + len(pairs),
    )  # fmt: skip
    return pairs


def embedding_stds(model, tokenizer, pairs: pd.DataFrame, pixels_NCHW: torch.Tensor, device) -> dict[str, float]:
    """Per tower, the std of the embeddings of the distinct clean inputs
    (:func:`clipmech.patching.corruptions.embedding_std`): the scale of the ``noise`` corruption."""
    base = pairs.drop_duplicates("clean")
    return {
        "visual": corruptions.embedding_std(model, "visual", pixels_NCHW[torch.tensor(base["clean"].to_list())]),
        "text": corruptions.embedding_std(
            model, "text", tokenizer(list(base["caption"])).to(device), torch.unique(tokenizer([""]))
        ),
    }


def tower_run(model, tower_name, *, chosen, corruption, pixels, tokenizer, scale, params, stds, device):
    """The :class:`clipmech.patching.tracing.TowerRun` of one tower on one corruption's pairs, and which of
    the pairs it uses (bool (Q,)); the run is None when no pair is usable (text tower: the caption and foil
    must end on the same token)."""
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
        batch_size=params["batch_size"], layers=_optional(params.get("layers")),
        positions=_optional(params.get("positions")),
    )  # fmt: skip
    return run, np.ones(len(chosen), dtype=bool) if tower_name == "visual" else keep


def _optional(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


def check_kept(baselines: Sequence[tuple[dict, engine.SweepResult]], min_effect: float) -> None:
    """Refuse a causal tracing in which ``min_effect`` drops every pair whose clean run is right.

    Parameters
    ----------
    baselines : sequence of (labels, SweepResult)
        The unpatched runs of every corruption and tower (``labels``: ``corruption``, ``tower``).
    min_effect : float
        patching.min_effect, in logits (:func:`clipmech.patching.measures.kept_pairs`).

    Raises
    ------
    ValueError
        If some pair's clean run is right but none is kept (every mean would be NaN because of
        ``min_effect``), naming ``patching.min_effect``, those pairs and the largest effect m_clean - m_corrupt
        among them; also when no corruption has a usable pair at all. When no clean run is right (a model
        that does not answer these pairs, such as a barely trained one) no setting can help: the tables are
        NaN and a warning says why.
    """
    if not baselines:
        raise ValueError("no corruption of patching.corruptions has a usable pair in either tower: nothing to trace")
    if sum(int(measures.kept_pairs(base, min_effect).sum()) for _, base in baselines):
        return
    effects_Q = [base.m_clean_Q - base.m_corrupt_Q for _, base in baselines]
    right = np.concatenate([effect[measures.clean_right(base)] for effect, (_, base) in zip(effects_Q, baselines)])
    n_pairs = sum(effect.size for effect in effects_Q)
    if not right.size:
        log.warning(
            "no clean run of the %d pairs over every corruption and tower is right (m_clean <= 0): the model does "
            "not answer these pairs, so no pair is kept and every recovery, circuit and concept table is NaN",
            n_pairs,
        )
        return
    raise ValueError(
        f"patching.min_effect = {min_effect} keeps no pair: of the {n_pairs} pairs over every corruption and tower, "
        f"{right.size} have a right clean run and the largest effect m_clean - m_corrupt among them is "
        f"{right.max():.3g} logits; every recovery, circuit and concept table would be NaN. Lower "
        "patching.min_effect (a corruption must move the logit difference by at least that much)"
    )


def trace_pairs(
    model, tokenizer, pairs: pd.DataFrame, pixels_NCHW: torch.Tensor, *, params: dict, device,
    tables: Sequence[str] = DEFAULT_TABLES, precision: str = "fp32",
) -> dict:  # fmt: skip
    """Causal tracing of both towers under every corruption of ``params["corruptions"]``, on the first
    ``params["n_pairs"]`` pairs of each (:func:`pairs_of`).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    tokenizer : callable
    pairs : pandas.DataFrame
        The pair table (``pair_id``, ``kind``, ``clean``, ``corrupt``, ``caption``, ``foil``) of a pairs dataset
        or of a captions dataset (:func:`clipmech.data.foils.caption_pairs`).
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S)
        The preprocessed images ``clean`` and ``corrupt`` index, on ``device``.
    params : dict
        ``corruptions``, ``n_pairs``, ``noise_scale``, ``seed``, ``batch_size``, ``min_effect``, ``families``
        (``resnet`` / ``transformer`` -> families), ``directions``, ``n_bootstrap``, optional ``layers`` and
        ``positions`` (the blocks and token positions swept, None = all: :class:`clipmech.patching.tracing.TowerRun`), ``circuit``
        (``threshold``, ``n_points``, ``n_random`` and ``mlp``: ``layer`` or ``neuron``, the MLP units of :func:`clipmech.patching.components.unit_components`).
    device : str or torch.device
    tables : sequence of str
        Which of :data:`TABLES` to return (default :data:`DEFAULT_TABLES`); the path view is computed
        only when ``circuit_paths`` or ``circuit_paths_summary`` is asked for.
    precision : {"fp32", "bf16", "fp16"}
        The compute precision of every forward (``extraction.precision``, :func:`clipmech.models.precision.autocast`);
        the metrics are computed from the runs' outputs in float32 (:func:`clipmech.patching.engine.sweep`).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``tables``, in :data:`TABLES` order, each with ``corruption`` and ``tower`` first: ``recovery`` (R
        and Delta logit per direction and component with bootstrap 95 % intervals,
        :func:`clipmech.patching.tracing.trace`), ``circuit`` and ``circuit_summary`` (circuit sparsity
        over heads and MLPs, the paper's measure, :func:`clipmech.patching.tracing.circuit` with view
        ``units``, denoising), ``circuit_paths`` and ``circuit_paths_summary`` (the same over the per-token
        path components, view ``paths``, with the read-out bound), ``runs``
        (per pair: its caption and foil, m_clean, m_corrupt, ``clean_right`` (m_clean > 0) and ``kept``, the pairs every mean uses:
        clean run right and m_clean - m_corrupt >= ``min_effect``, :func:`clipmech.patching.measures.kept_pairs`;
        their sums count the pairs that pass each filter).

    Raises
    ------
    ValueError
        If the pair table lacks a kind a corruption needs (:func:`pairs_of`), for a table not in
        :data:`TABLES`, or when ``min_effect`` keeps no pair at all (:func:`check_kept`); for fp16 on a
        device that is not CUDA.
    """
    with autocast(device, precision):
        return _traced(model, tokenizer, pairs, pixels_NCHW, params, device, tables)


def _traced(model, tokenizer, pairs, pixels_NCHW, params, device, tables) -> dict:
    """:func:`trace_pairs` inside its precision's autocast."""
    unknown = [key for key in tables if key not in TABLES]
    if unknown:
        raise ValueError(f"unknown patching tables {unknown}; valid: {', '.join(TABLES)}")
    scale = float(model.logit_scale.detach().exp())
    stds = embedding_stds(model, tokenizer, pairs, pixels_NCHW, device)
    log.info("logit scale %.3f; embedding std: %s", scale, stds)
    frames = {key: [] for key in TABLES}

    def tower_runs():
        """(labels, run, chosen, used) of every corruption and tower with a usable pair, built on demand."""
        for corruption in params["corruptions"]:
            chosen = pairs_of(pairs, corruption, params["n_pairs"])
            for tower_name in ("visual", "text"):
                run, used = tower_run(
                    model, tower_name, chosen=chosen, corruption=corruption, pixels=pixels_NCHW,
                    tokenizer=tokenizer, scale=scale, params=params, stds=stds, device=device,
                )  # fmt: skip
                if run is None:
                    log.info("%s, %s: no usable pair, skipped", corruption, tower_name)
                    continue
                yield {"corruption": corruption, "tower": tower_name}, run, chosen, used

    # The baselines first (one unpatched run each), so that a min_effect keeping no pair fails before the sweeps.
    check_kept([(labels, run.baseline()) for labels, run, _, _ in tower_runs()], params["min_effect"])
    for labels, run, chosen, used in tower_runs():
        base_run = run.baseline()
        right = measures.clean_right(base_run)
        keep = run.kept(params["min_effect"])
        frames["runs"].append(
            pd.DataFrame(
                {
                    **labels,
                    "pair_id": chosen["pair_id"].to_numpy()[used],
                    "caption": chosen["caption"].to_numpy()[used],
                    "foil": chosen["foil"].to_numpy()[used],
                    "m_clean": base_run.m_clean_Q,
                    "m_corrupt": base_run.m_corrupt_Q,
                    "clean_right": right,
                    "kept": keep,
                }
            )
        )
        families = params["families"]["resnet" if run.info.kind == "resnet" else "transformer"]
        directions = params["directions"]
        stats = {"min_effect": params["min_effect"], "n_resamples": params["n_bootstrap"], "seed": params["seed"]}
        recovery, single = tracing.trace(run, families, directions, **stats)
        frames["recovery"].append(recovery.assign(**labels))
        circuit = {
            "threshold": params["circuit"]["threshold"], "n_points": params["circuit"]["n_points"],
            "n_random": params["circuit"]["n_random"], "mlp": params["circuit"]["mlp"], **stats,
        }  # fmt: skip
        curve, summary = tracing.circuit(run, single, view="units", **circuit)
        frames["circuit"].append(curve.assign(**labels))
        frames["circuit_summary"].append(summary.assign(**labels))
        if "circuit_paths" in tables or "circuit_paths_summary" in tables:
            path_curve, path_summary = tracing.circuit(run, single, view="paths", **circuit)
            frames["circuit_paths"].append(path_curve.assign(**labels))
            frames["circuit_paths_summary"].append(path_summary.assign(**labels))
        log.info(
            "%s, %s: %d of %d clean runs right, %d pairs kept; greedy circuit needs %s of %d heads and MLPs",
            labels["corruption"], labels["tower"], int(right.sum()), keep.size, int(keep.sum()),
            summary.loc[summary["order"] == "greedy", "n_needed"].iloc[0], summary["n_total"].iloc[0],
        )  # fmt: skip
    front = ["corruption", "tower"]
    out = {}
    for key in (key for key in TABLES if key in tables):
        table = pd.concat(frames[key], ignore_index=True)
        out[key] = table[front + [c for c in table.columns if c not in front]]
    return out
