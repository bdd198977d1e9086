"""Reference text embeddings of the MiCLIP concept sets: the stage of rule ``embed_miclip_concepts``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipmech.data import shapes
from clipmech.decomposition import wordlist
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching.interventions import concept_prompts

log = logging.getLogger(__name__)


def embed_miclip_concepts(
    *, model: ModelSpec, embeddings: str, n_words: int, device: str, threads: int, batch_size: int = 256
) -> None:
    """Embed the two concept sets of methods.md Sec. 9 with the reference CLIP's text tower, once per reference.

    Writes ``embeddings``, an npz with ``concepts`` (16,) the Shapes features, ``prompts`` (16,) their
    zero-shot prompts ("a red shape", "a square", "a shape at the top left"), ``concept_embeddings`` (16, E),
    ``words`` (A,) the ``n_words`` most common English words (:func:`clipmech.decomposition.wordlist.vocabulary`)
    and ``word_embeddings`` (A, E), the words embedded as themselves; L2-normalised float32. ``batch_size``:
    texts per forward pass.
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    clip, _, tokenizer = loading.load(model, torch_device)
    prompts = concept_prompts()
    words = wordlist.vocabulary(n_words)
    Path(embeddings).parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        embeddings,
        concepts=np.array(shapes.FEATURES),
        prompts=np.array(prompts),
        concept_embeddings=wordlist.embed_texts(clip, tokenizer, prompts, batch_size, torch_device),
        words=np.array(words),
        word_embeddings=wordlist.embed_texts(clip, tokenizer, words, batch_size, torch_device),
    )
    log.info("embedded %d concepts and %d words with %s", len(prompts), len(words), model.name)
