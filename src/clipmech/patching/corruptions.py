"""Embedding corruptions of causal tracing: zeroed embeddings and Gaussian noise (methods.md Sec. 8).

The embedding of a tower is the output of one module, before positional embeddings and class tokens
are added: the patch embeddings (open_clip ViT ``visual.conv1``, (N, D, h, w); timm
``visual.trunk.patch_embed``, (N, T_patch, D)), the token embeddings of the text tower
(``token_embedding``, (N, T, D)), and for CLIP-ResNet, which has no patch embedding, the output of
its stem (``visual.avgpool``, (N, C, h, w)). ``zero`` sets the corrupted rows' embeddings to 0 (the
causal-tracing paper); ``noise`` adds Gaussian noise of ``noise_scale`` times the embeddings'
standard deviation (ROME: 3). In the text tower only the caption's word tokens are corrupted (not
start or end of text, not padding), like ROME's subject tokens; in the vision tower every patch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from clipmech.models.towers import text_pool, tower

CORRUPTIONS = ("zero", "noise")


def embedding_module(model: nn.Module, tower_name: str) -> nn.Module:
    """The module whose output is the tower's embedding (see the module docstring).

    Raises
    ------
    ValueError, TypeError
        As :func:`clipmech.models.towers.tower` for an unknown tower or an unsupported kind.
    """
    info = tower(model, tower_name)
    if info.kind == "vit":
        return model.visual.conv1
    if info.kind == "timm":
        return model.visual.trunk.patch_embed
    if info.kind == "resnet":
        return model.visual.avgpool
    text = getattr(model, "text", None)
    return text.token_embedding if text is not None else model.token_embedding


def word_positions(ids_NT: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """Which tokens of a batch of token ids are words: neither start / end of text nor padding.

    Parameters
    ----------
    ids_NT : torch.Tensor, int64, (N, T)
    special_ids : torch.Tensor, int64
        The ids the tokenizer gives an empty caption (``tokenizer([""])``): its start, end and padding.

    Returns
    -------
    torch.Tensor, bool, (N, T)
    """
    return ~torch.isin(ids_NT, special_ids.to(ids_NT.device))


def pooled_positions(model: nn.Module, ids_NT: torch.Tensor) -> torch.Tensor:
    """The token each caption's text embedding is read from, as open_clip's ``text_global_pool`` picks it.

    ``argmax`` (CLIP: the end-of-text token has the largest id), ``last`` (SigLIP), ``first`` or ``eos``.

    Returns
    -------
    torch.Tensor, int64, (N,)

    Raises
    ------
    ValueError
        For a text tower that does not pool one token (pool type ``none``).
    """
    pool, eos = text_pool(model)
    n, t = ids_NT.shape
    if pool == "argmax":
        return ids_NT.argmax(dim=-1)
    if pool == "last":
        return torch.full((n,), t - 1, dtype=torch.long, device=ids_NT.device)
    if pool == "first":
        return torch.zeros(n, dtype=torch.long, device=ids_NT.device)
    if pool == "eos":
        return (ids_NT == eos).int().argmax(dim=-1)
    raise ValueError(f"text pool type {pool!r} does not read one token; supported: argmax, last, first, eos")


@torch.inference_mode()
def embedding_std(
    model: nn.Module,
    tower_name: str,
    inputs: torch.Tensor,
    special_ids: torch.Tensor | None = None,
    batch_size: int = 64,
) -> float:
    """Standard deviation of the tower's embedding values over ``inputs`` (all elements; text: word tokens).

    Parameters
    ----------
    inputs : torch.Tensor
        Pixels (N, 3, H, W) for the vision tower, token ids (N, T) for the text tower.
    special_ids : torch.Tensor, optional
        Text tower: the non-word ids (:func:`word_positions`).

    Returns
    -------
    float
    """
    module = embedding_module(model, tower_name)
    values = []

    def hook(mod, args, output):
        values.append(output.detach().double())

    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, inputs.shape[0], batch_size):
            chunk = inputs[start : start + batch_size]
            (model.encode_text if tower_name == "text" else model.encode_image)(chunk)
            if tower_name == "text":
                values[-1] = values[-1][word_positions(chunk, special_ids)]
    finally:
        handle.remove()
    return float(torch.cat([v.flatten() for v in values]).std())


@dataclass
class EmbeddingCorruption:
    """Zeroed or noised embeddings of a tower, applied to chosen rows of a batch.

    Attributes
    ----------
    model : torch.nn.Module
    tower_name : {"visual", "text"}
    kind : {"zero", "noise"}
    std : float
        Noise standard deviation (``noise_scale`` x :func:`embedding_std`); unused for ``zero``.
    seed : int
        Noise of pair q is standard normal (float64, the shape of one row's embedding) times
        ``std``, drawn from a ``torch.Generator`` seeded ``seed * 1_000_003 + q``: the same in every
        batch layout.
    words_QT : torch.Tensor or None
        Text tower: :func:`word_positions` of each pair's clean caption, the tokens corrupted.
    """

    model: nn.Module
    tower_name: str
    kind: str
    std: float = 0.0
    seed: int = 0
    words_QT: torch.Tensor | None = None
    _noise: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.kind not in CORRUPTIONS:
            raise ValueError(f"unknown embedding corruption {self.kind!r}; valid: {', '.join(CORRUPTIONS)}")
        if self.tower_name == "text" and self.words_QT is None:
            raise ValueError("a text-tower corruption needs words_QT, the word tokens of each pair's caption")

    def _noise_of(self, pair: int, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        if pair not in self._noise:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + pair)
            self._noise[pair] = torch.randn(shape, generator=generator, dtype=torch.float64) * self.std
        return self._noise[pair].to(device=like.device, dtype=like.dtype)

    def _corrupt(self, emb: torch.Tensor, pair: int) -> torch.Tensor:
        new = torch.zeros_like(emb) if self.kind == "zero" else emb + self._noise_of(pair, emb.shape, emb)
        if self.words_QT is None:
            return new
        words_T = self.words_QT[pair].to(emb.device)[: emb.shape[0], None]
        return torch.where(words_T, new, emb)

    @contextmanager
    def applied(self, rows_B: torch.Tensor, pairs_B: torch.Tensor) -> Iterator[None]:
        """Corrupt the embeddings of the rows where ``rows_B`` is True during the forward passes inside.

        Parameters
        ----------
        rows_B : torch.Tensor, bool, (B,)
        pairs_B : torch.Tensor, int64, (B,)
            The pair of each row (selects its noise and its word tokens).
        """
        rows = [int(b) for b in torch.nonzero(rows_B).flatten()]

        def hook(module, args, output):
            new = output.clone()
            for b in rows:
                new[b] = self._corrupt(output[b], int(pairs_B[b]))
            return new

        handle = embedding_module(self.model, self.tower_name).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
