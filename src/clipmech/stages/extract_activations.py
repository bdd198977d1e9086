"""Extract the activation store of one model on one dataset: the stage of rule ``extract_activations``
(``extraction.parts`` = 1), and of the rules that write it in K parts: ``begin_activations`` (its
template), ``extract_activations_part`` (each part) and ``publish_activations``.

The four share this module, hence one code hash (their ``code`` param, the one of
``workflow/scripts/extract_activations.py``): it is recorded in the store's provenance, which a part
checks against its template's, and which makes the store the same byte for byte whatever K.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction


def _settings(extraction: dict) -> dict:
    """The keyword arguments of the extraction functions from the config's ``extraction`` section."""
    return {
        "layers": extraction.get("layers"),
        "sites": tuple(extraction.get("sites", activation_extraction.DEFAULT_SITES)),
        "reductions": tuple(extraction.get("reductions", ("mean", "max", "cls"))),
        "save_tokens": extraction.get("save_tokens", True),
        "batch_size": extraction.get("batch_size", 32),
        "device": extraction.get("device", "auto"),
        "precision": extraction.get("precision", "fp32"),
    }


def extract_activations(
    *, model: ModelSpec, dataset_dir: str, store: str, extraction: dict, threads: int, code: str
) -> None:
    """Run :func:`clipmech.stores.activation_extraction.extract` for ``model`` with the config's ``extraction``
    settings; ``code`` is the rule's code hash (its ``code`` param), recorded in the store's provenance."""
    torch.set_num_threads(threads)
    activation_extraction.extract(model, dataset_dir, store, **_settings(extraction), code=code, workers=threads)


def begin_activations(
    *, model: ModelSpec, dataset_dir: str, store: str, marker: str, extraction: dict, threads: int, code: str
) -> None:
    """Write the template of a store extracted in parts (:func:`clipmech.stores.activation_extraction.begin_parts`),
    on the CPU (the model runs on one image at most, in float32, for the shapes), then the ``marker`` file (JSON: the
    partial store, and whether a partial store of the same provenance was kept for its parts to resume)."""
    torch.set_num_threads(threads)
    settings = {**_settings(extraction), "device": "cpu"}
    partial_store = Path(store).with_name(Path(store).name + ".partial")
    kept = partial_store.exists()
    partial = activation_extraction.begin_parts(model, dataset_dir, store, **settings, code=code)
    Path(marker).write_text(json.dumps({"partial": str(partial), "resumed": kept}) + "\n")


def extract_activations_part(
    *,
    model: ModelSpec,
    dataset_dir: str,
    store: str,
    part: int,
    parts: int,
    marker: str,
    extraction: dict,
    threads: int,
    code: str,
) -> None:
    """Extract part ``part`` of ``parts`` of a store (:func:`clipmech.stores.activation_extraction.extract_part`),
    then write the ``marker`` file (JSON: the part's image range)."""
    torch.set_num_threads(threads)
    span = activation_extraction.extract_part(
        model, dataset_dir, store, int(part), parts, **_settings(extraction), code=code, workers=threads
    )
    Path(marker).write_text(json.dumps({"part": span.index, "parts": parts, "images": [span.first, span.end]}) + "\n")


def publish_activations(*, store: str, parts: int) -> None:
    """Publish a store written in ``parts`` parts (:func:`clipmech.stores.activation_extraction.publish_parts`)."""
    activation_extraction.publish_parts(store, parts)
