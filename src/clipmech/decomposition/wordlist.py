"""The dictionary of the text decomposition: the most common English words and their text embeddings.

methods.md Sec. 5 ("Text decomposition"): the 30,000 most common English words by ``wordfreq`` (offline
word lists), embedded by the model's text tower (rule ``embed_text``); the OMP over them is in
:mod:`clipmech.decomposition.text`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import wordfreq

from clipmech.models import loading


def vocabulary(n_words: int, language: str = "en") -> list[str]:
    """The ``n_words`` most frequent words of ``language`` by ``wordfreq`` (offline word lists).

    Raises
    ------
    ValueError
        If ``n_words`` < 1 or wordfreq has fewer words.
    """
    if n_words < 1:
        raise ValueError(f"n_words must be a positive integer, got {n_words}")
    words = wordfreq.top_n_list(language, n_words)
    if len(words) < n_words:
        raise ValueError(f"wordfreq lists only {len(words)} {language!r} words, fewer than n_words={n_words}")
    return list(words)


def embed_texts(
    model, tokenizer, texts: Sequence[str], batch_size: int, device: str | torch.device = "cpu"
) -> np.ndarray:
    """L2-normalised text embeddings of many texts, in batches (:func:`clipmech.models.loading.encode_text`).

    Each batch is written into one array allocated at the first: small per-batch results kept until a final
    concatenation outlive each batch's large temporaries and fragment the heap, which then grows with the
    number of batches.

    Returns
    -------
    ndarray, shape (len(texts), E), float32

    Raises
    ------
    ValueError
        If ``texts`` is empty.
    """
    if len(texts) == 0:
        raise ValueError("embed_texts needs at least one text")
    out_TE = None
    for start in range(0, len(texts), batch_size):
        batch = loading.encode_text(model, tokenizer, list(texts[start : start + batch_size]), device).cpu().numpy()
        if out_TE is None:
            out_TE = np.empty((len(texts), batch.shape[1]), dtype=np.float32)
        out_TE[start : start + batch.shape[0]] = batch
    return out_TE
