"""Reference text embeddings of the MiCLIP concept sets: the stage of rule ``embed_miclip_concepts``."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipmech import artefacts
from clipmech.data import datasets, shapes
from clipmech.decomposition import wordlist
from clipmech.miclip import natural as miclip_natural
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching.interventions import concept_prompts

log = logging.getLogger(__name__)

#: The rule that writes the reference concept embeddings (named when a file fails its sha256 check).
RULE = "embed_miclip_concepts"


def embed_miclip_concepts(
    *,
    model: ModelSpec,
    embeddings: str,
    n_words: int,
    device: str,
    threads: int,
    batch_size: int = 256,
    dataset_dir: str | None = None,
    natural: dict | None = None,
) -> None:
    """Embed the two concept sets of methods.md Sec. 9 with the reference CLIP's text tower, once per reference.

    Writes ``embeddings``, an npz with ``concepts`` (16,) the Shapes features, ``prompts`` (16,) their
    zero-shot prompts ("a red shape", "a square", "a shape at the top left"), ``concept_embeddings`` (16, E),
    ``words`` (A,) the ``n_words`` most common English words (:func:`clipmech.decomposition.wordlist.vocabulary`)
    and ``word_embeddings`` (A, E), the words embedded as themselves; L2-normalised float32. ``batch_size``:
    texts per forward pass. A verified artefact (:mod:`clipmech.artefacts`; :func:`load_concepts` reads it).

    For a natural-image ``dataset_dir`` (methods.md Sec. 9.8) the concepts are the dataset's
    (:func:`clipmech.data.concepts.concept_matrix`: ImageNet class names, folder names, COCO categories or the
    words ``natural["words"]`` of a captions dataset), prompted as :data:`clipmech.miclip.natural.PROMPT`.
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    clip, _, tokenizer = loading.load(model, torch_device)
    names, prompts = list(shapes.FEATURES), concept_prompts()
    if dataset_dir is not None:
        data = datasets.load(dataset_dir)
        if miclip_natural.is_natural(data):
            names = list(miclip_natural.dataset_concepts(data, (natural or {}).get("words")).names)
            prompts = miclip_natural.prompts(names)
    words = wordlist.vocabulary(n_words)
    artefacts.save_npz(
        embeddings,
        rule=RULE,
        concepts=np.array(names),
        prompts=np.array(prompts),
        concept_embeddings=wordlist.embed_texts(clip, tokenizer, prompts, batch_size, torch_device),
        words=np.array(words),
        word_embeddings=wordlist.embed_texts(clip, tokenizer, words, batch_size, torch_device),
    )
    log.info("embedded %d concepts and %d words with %s", len(prompts), len(words), model.name)


def load_concepts(path: str):
    """Reference concept embeddings written by :func:`embed_miclip_concepts`, checked against their sha256
    record (an ``NpzFile``; :func:`clipmech.artefacts.load_npz`)."""
    return artefacts.load_npz(path, rule=RULE)
