"""Text embeddings of the word list and the class prompts: the stage of rule ``embed_text``."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipmech import artefacts
from clipmech.decomposition import wordlist
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec

log = logging.getLogger(__name__)

#: The rule that writes the text embeddings (named when a file fails its sha256 check).
RULE = "embed_text"


def embed_text(*, model: ModelSpec, embeddings: str, text: dict, device: str, threads: int) -> None:
    """Embed the vocabulary (the ``n_words`` most common English words) and the zero-shot prompts.

    ``text`` is the config's ``decomposition.text`` section. Writes ``embeddings``, an npz with ``words``
    (A,), ``word_embeddings`` (A, E), ``prompt_task``, ``prompt_class``, ``prompts`` (P,) and
    ``prompt_embeddings`` (P, E); embeddings are L2-normalised float32 from ``model``'s text tower. A verified
    artefact (:mod:`clipmech.artefacts`; :func:`load_text` reads it).
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    clip, _, tokenizer = loading.load(model, torch_device)
    words = wordlist.vocabulary(text["n_words"])
    word_embeddings = wordlist.embed_texts(clip, tokenizer, words, text["batch_size"], torch_device)
    tasks, classes, prompts = [], [], []
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, task_prompts = zeroshot.attribute_prompts(task)
        tasks += [task] * len(names)
        classes += list(names)
        prompts += task_prompts
    prompt_embeddings = wordlist.embed_texts(clip, tokenizer, prompts, text["batch_size"], torch_device)
    artefacts.save_npz(
        embeddings,
        rule=RULE,
        words=np.array(words),
        word_embeddings=word_embeddings,
        prompt_task=np.array(tasks),
        prompt_class=np.array(classes),
        prompts=np.array(prompts),
        prompt_embeddings=prompt_embeddings,
    )
    log.info("embedded %d words and %d prompts with %s", len(words), len(prompts), model.name)


def load_text(path: str):
    """Text embeddings written by :func:`embed_text`, checked against their sha256 record (an ``NpzFile``;
    :func:`clipmech.artefacts.load_npz`)."""
    return artefacts.load_npz(path, rule=RULE)
