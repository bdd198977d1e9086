"""Tokens of one site of an activation store, streamed for SAE training and evaluation (methods.md Sec. 7).

A store (:mod:`clipmech.stores.activations`) holds a site's activations as one zarr chunk per batch
of images (and per layer). :class:`SiteTokens` reads them a whole chunk at a time, keeping the tokens
of a set of images (the training or the held-out split of :func:`split_images`) and of the configured
kind (:data:`TOKENS`): ``patch`` (the tokens after the store's ``n_prefix_tokens``), ``class``
(token 0) or ``all``. :meth:`SiteTokens.batches` is one sequential pass (evaluation).

:class:`ShuffleStream` is the training stream, endless and seeded. Each epoch visits every chunk
once, in the order of a seeded permutation; the chunks are taken in that order into rounds, each
round as many whole chunks as fit into a shuffle buffer of ``buffer_tokens`` tokens, and a round's
tokens are emitted in a seeded random order. Batch i is tokens [i B, (i + 1) B) of that endless
sequence (a batch can span two rounds or two epochs), so the stream is a pure function of (store,
images, tokens, batch size, buffer size, seed): it restarts at any batch index (a resumed training,
:mod:`clipmech.sae.train`) by re-reading only that batch's round. Memory is bounded by the buffer, not
by the store: at most ``buffer_tokens + batch_size - 1`` tokens are held (one round and the start of a
batch carried over from the previous round; :attr:`ShuffleStream.max_tokens_held` records the peak),
float16 as stored; batches are float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from clipmech.stores import activations

#: The token kinds an SAE trains on.
TOKENS = ("patch", "class", "all")


def split_images(n_images: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out split by image: the last ``round(holdout * n_images)`` images of a seeded
    permutation are held out.

    Parameters
    ----------
    n_images : int
    holdout : float
        Fraction held out, in [0, 1).
    seed : int
        Seed of the permutation (``numpy.random.default_rng``).

    Returns
    -------
    train, heldout : numpy.ndarray, int64
        Sorted image indices; together every image exactly once.

    Raises
    ------
    ValueError
        If ``holdout`` is outside [0, 1) or leaves no training image.
    """
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    n_heldout = int(round(holdout * n_images))
    if n_images - n_heldout < 1:
        raise ValueError(f"holdout {holdout} of {n_images} images leaves no training image")
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[: n_images - n_heldout]), np.sort(order[n_images - n_heldout :])


class SiteTokens:
    """The tokens of one stored site for a set of images, read one whole zarr chunk at a time.

    Parameters
    ----------
    store : path or xarray.Dataset
        An activation store, or the Dataset :func:`clipmech.stores.activations.open_store` returned.
    site : str
        A stored site (:func:`clipmech.stores.activations.site_activations`).
    tokens : {"patch", "class", "all"}
        Which tokens of each image (module docstring); text-tower sites take ``all`` only.
    images : array of int, optional
        The images whose tokens are read (default all); order does not matter.

    Attributes
    ----------
    d : int
        Width of a token.
    tokens_per_image : int
    n_tokens : int
        Tokens of the selected images.
    chunk_bounds : list of (int, int)
        First and past-the-end image of every zarr chunk.
    chunk_tokens : numpy.ndarray, int64
        Selected tokens in every chunk.

    Raises
    ------
    ValueError
        For an unknown ``tokens`` kind, ``class`` on a tower without a class token, a kind other than
        ``all`` on a text site, images out of range, or no image selected; a site not in the store
        (:func:`~clipmech.stores.activations.site_activations`).
    """

    def __init__(self, store: str | Path | xr.Dataset, site: str, tokens: str = "all", images=None):
        ds = store if isinstance(store, xr.Dataset) else activations.open_store(store)
        if tokens not in TOKENS:
            raise ValueError(f"unknown tokens {tokens!r}; valid: {', '.join(TOKENS)}")
        self.array = activations.site_activations(ds, site)
        n_images, n_seq, self.d = self.array.shape
        if site.startswith("text."):
            if tokens != "all":
                raise ValueError(f"site {site!r} is a text-tower site: tokens must be 'all', got {tokens!r}")
            self.token_slice = slice(0, n_seq)
        else:
            n_prefix = int(ds.attrs["n_prefix_tokens"])
            if tokens == "class" and n_prefix < 1:
                raise ValueError(f"tokens 'class': the vision tower of this store has no class token (site {site!r})")
            self.token_slice = {"patch": slice(n_prefix, n_seq), "class": slice(0, 1), "all": slice(0, n_seq)}[tokens]
        self.site, self.tokens = site, tokens
        self.tokens_per_image = len(range(n_seq)[self.token_slice])
        selected = np.zeros(n_images, dtype=bool)
        images = np.arange(n_images) if images is None else np.asarray(images, dtype=np.int64)
        if images.size and (images.min() < 0 or images.max() >= n_images):
            raise ValueError(f"images must lie in 0..{n_images - 1}, got {images.min()}..{images.max()}")
        selected[images] = True
        if not selected.any():
            raise ValueError(f"no image selected from the {n_images} of site {site!r}")
        self.selected = selected
        edges = np.cumsum((0,) + self.array.chunks[0])
        self.chunk_bounds = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.chunk_tokens = np.array([selected[a:b].sum() * self.tokens_per_image for a, b in self.chunk_bounds])
        self.n_tokens = int(self.chunk_tokens.sum())

    @property
    def n_chunks(self) -> int:
        """Number of zarr chunks of the site."""
        return len(self.chunk_bounds)

    def read_chunk(self, chunk: int) -> np.ndarray:
        """The selected tokens of one chunk: (chunk_tokens[chunk], d), float16, image-major in image order."""
        first, last = self.chunk_bounds[chunk]
        keep = self.selected[first:last]
        if not keep.any():
            return np.empty((0, self.d), dtype=np.float16)
        values_NTD = self.array.isel(image=slice(first, last)).values
        return values_NTD[keep][:, self.token_slice].reshape(-1, self.d)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """One sequential pass over the selected tokens in store order: float32 (B, d) batches, the last
        one shorter if ``batch_size`` does not divide :attr:`n_tokens`."""
        carry = np.empty((0, self.d), dtype=np.float16)
        for chunk in range(self.n_chunks):
            carry = np.concatenate([carry, self.read_chunk(chunk)])
            while len(carry) >= batch_size:
                yield torch.from_numpy(carry[:batch_size].astype(np.float32))
                carry = carry[batch_size:]
        if len(carry):
            yield torch.from_numpy(carry.astype(np.float32))


class ShuffleStream:
    """The endless seeded training stream over a :class:`SiteTokens` (module docstring).

    Parameters
    ----------
    source : SiteTokens
    batch_size : int
    buffer_tokens : int
        Capacity of the shuffle buffer in tokens; must hold the largest chunk.
    seed : int

    Attributes
    ----------
    max_tokens_held : int
        The most tokens held at once so far (buffer plus carried batch start).

    Raises
    ------
    ValueError
        If ``batch_size`` or ``buffer_tokens`` is not positive, or the buffer is smaller than a chunk.
    """

    def __init__(self, source: SiteTokens, batch_size: int, buffer_tokens: int, seed: int):
        if batch_size < 1 or buffer_tokens < 1:
            raise ValueError(f"batch_size and buffer_tokens must be positive, got {batch_size}, {buffer_tokens}")
        largest = int(source.chunk_tokens.max())
        if largest > buffer_tokens:
            first, last = source.chunk_bounds[int(source.chunk_tokens.argmax())]
            raise ValueError(
                f"buffer_tokens = {buffer_tokens} holds less than one zarr chunk of site {source.site!r} "
                f"({largest} tokens: images {first}..{last - 1} x {source.tokens_per_image} tokens); "
                f"set buffer_tokens to at least {largest}"
            )
        self.source, self.batch_size, self.buffer_tokens, self.seed = source, batch_size, buffer_tokens, seed
        self.max_tokens_held = 0

    def chunk_order(self, epoch: int) -> np.ndarray:
        """The seeded order in which epoch ``epoch`` visits the chunks: a permutation of all of them."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.source.n_chunks)

    def rounds(self, epoch: int) -> list[list[int]]:
        """The chunks of each round of an epoch: the chunk order cut into consecutive runs of whole
        chunks that fit into the buffer (chunks without selected tokens left out)."""
        rounds: list[list[int]] = []
        filled = self.buffer_tokens
        for chunk in self.chunk_order(epoch):
            size = int(self.source.chunk_tokens[chunk])
            if size == 0:
                continue
            if filled + size > self.buffer_tokens:
                rounds.append([])
                filled = 0
            rounds[-1].append(int(chunk))
            filled += size
        return rounds

    def _round_order(self, epoch: int, index: int, n_tokens: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, index]).permutation(n_tokens)

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Batches ``start``, ``start + 1``, ... of the stream: float32 (batch_size, d), endless.

        Raises
        ------
        ValueError
            If ``start`` is negative.
        """
        if start < 0:
            raise ValueError(f"start must be a batch index >= 0, got {start}")
        per_epoch = self.source.n_tokens
        epoch, offset = divmod(start * self.batch_size, per_epoch)
        rounds = self.rounds(epoch)
        first_round = 0
        while offset >= (size := int(self.source.chunk_tokens[rounds[first_round]].sum())):
            offset -= size
            first_round += 1
        carry = np.empty((0, self.source.d), dtype=np.float16)
        while True:
            for index in range(first_round, len(rounds)):
                buffer = np.concatenate([self.source.read_chunk(chunk) for chunk in rounds[index]])
                self.max_tokens_held = max(self.max_tokens_held, len(buffer) + len(carry))
                order = self._round_order(epoch, index, len(buffer))
                while offset < len(buffer):
                    take = order[offset : offset + self.batch_size - len(carry)]
                    offset += len(take)
                    carry = np.concatenate([carry, buffer[take]])
                    if len(carry) == self.batch_size:
                        yield torch.from_numpy(carry.astype(np.float32))
                        carry = carry[:0]
                offset = 0
            epoch += 1
            rounds, first_round = self.rounds(epoch), 0
