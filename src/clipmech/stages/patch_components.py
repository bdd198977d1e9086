"""Causal tracing and activation patching of both towers on Shapes minimal pairs (methods.md Sec. 8): the stage of
rule ``patch_components``."""

from __future__ import annotations

import torch

from clipmech.data import datasets
from clipmech.data.tables import write_table
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import runs


def patch_components(
    *, model: ModelSpec, dataset_dir: str, out: dict, patching: dict, device: str, precision: str, threads: int
) -> None:
    """Causal tracing (methods.md Sec. 8) of both towers under every corruption in ``patching["corruptions"]``, on the first ``patching["n_pairs"]`` pairs of each kind of a pairs dataset (:func:`clipmech.patching.runs.trace_pairs`).

    Writes ``out["recovery"]`` (one row per corruption, tower, direction and component: R and Delta logit
    with bootstrap 95 % intervals, :func:`clipmech.patching.tracing.trace`), ``out["circuit"]`` and
    ``out["circuit_summary"]`` (circuit sparsity over attention heads and MLPs, the paper's measure),
    ``out["circuit_paths"]`` and ``out["circuit_paths_summary"]`` (the same over per-token path
    components, with the read-out bound; :func:`clipmech.patching.tracing.circuit`, denoising) and
    ``out["runs"]`` (per corruption, tower and pair: m_clean, m_corrupt, clean_right, kept). Every forward runs
    at ``precision`` (``extraction.precision``, :mod:`clipmech.models.precision`).

    Raises
    ------
    ValueError
        If the dataset is not a pairs dataset (it has no pair table) or lacks a kind a corruption needs, or
        for fp16 on a device that is not CUDA.
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    if data.pairs is None:
        raise ValueError(
            f"dataset {dataset_dir} is of kind {data.spec['kind']!r}; causal tracing needs a 'pairs' dataset"
        )
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    pixels = loading.preprocess_images(data.images, preprocess).to(torch_device)
    tables = runs.trace_pairs(
        clip,
        tokenizer,
        data.pairs,
        pixels,
        params=patching,
        device=torch_device,
        tables=tuple(out),
        precision=precision,
    )
    for key, table in tables.items():
        write_table(table, out[key])
