"""The batched patching engine: many patched copies of a run in one forward pass (methods.md Sec. 8).

ROME's layout: a forward pass holds, for each of its pairs, the clean run, the corrupted run and one
copy of the base run per patch set; at every patched site, each copy takes its components from the
source run of its own pair *in the same pass*, which that site has already computed (the source rows
are never patched). Denoising: base = corrupted, source = clean; noising: the reverse. A pass holds
at most ``batch_size`` rows; which rows share a pass changes nothing but floating-point rounding.

Shared prefix (``share_prefix``, on by default): a patched copy equals its base run until the first
block it patches, so the blocks before it run once for the base run, not once per copy. The pass
enters block 0 with the clean and corrupted runs and the copies patched there, and each later block
l copies in, from their base rows, the copies whose first patched block is l (forward pre-hooks on
the blocks; the embeddings, cheap, still run for every row). After the last block every row is back
in its place, so the tower's head and the metric see the full batch. On a tower of L blocks with
components spread evenly over the layers this skips about (L - 1) / 2L of the block computations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from clipmech.hooks.rows import expand_rows, gather_rows
from clipmech.hooks.sites import hooked
from clipmech.models.towers import tower
from clipmech.patching.components import Component

DIRECTIONS = ("denoising", "noising")


@dataclass(frozen=True)
class SweepResult:
    """The metric of every run of a sweep.

    Attributes
    ----------
    m_clean_Q, m_corrupt_Q : numpy.ndarray, float64, (Q,)
        Metric of the clean and the corrupted run of each pair.
    m_patched_QK : numpy.ndarray, float64, (Q, K)
        Metric of the base run of pair q with patch set k.
    direction : {"denoising", "noising"}
    """

    m_clean_Q: np.ndarray
    m_corrupt_Q: np.ndarray
    m_patched_QK: np.ndarray
    direction: str

    @property
    def m_base_Q(self) -> np.ndarray:
        """The unpatched run the patches go into: corrupted (denoising) or clean (noising)."""
        return self.m_corrupt_Q if self.direction == "denoising" else self.m_clean_Q


def _index(pattern: tuple, rows: torch.Tensor, coords: list[torch.Tensor]) -> tuple:
    """An advanced index: the rows, then per axis of the pattern its coordinates (int axes) or a slice."""
    index, c = [rows], 0
    for is_int in pattern:
        if is_int:
            index.append(coords[c])
            c += 1
        else:
            index.append(slice(None))
    return tuple(index)


def _restorer(entries: list[tuple[int, int, tuple]]) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit that copies, for each (row, source row, index), the source's slice into the row."""
    groups: dict[tuple, list] = {}
    for row, source, index in entries:
        pattern = tuple(i is not None for i in index)
        groups.setdefault(pattern, []).append((row, source, [i for i in index if i is not None]))
    prepared = []
    for pattern, items in groups.items():
        rows = torch.tensor([item[0] for item in items])
        sources = torch.tensor([item[1] for item in items])
        n_int = sum(pattern)
        coords = [torch.tensor([item[2][a] for item in items]) for a in range(n_int)]
        prepared.append((pattern, rows, sources, coords))

    def edit(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        for pattern, rows, sources, coords in prepared:
            device_coords = [c.to(act.device) for c in coords]
            new[_index(pattern, rows.to(act.device), device_coords)] = act[
                _index(pattern, sources.to(act.device), device_coords)
            ]
        return new

    return edit


def _float32(outputs: torch.Tensor) -> torch.Tensor:
    """A run's outputs in float32 when autocast left them in a half dtype (extraction.precision bf16 / fp16),
    so that the metric's sums do not round at 8 or 11 bits; float32 and float64 outputs as they are."""
    return outputs.float() if outputs.dtype in (torch.float16, torch.bfloat16) else outputs


def _check(direction: str, clean: torch.Tensor, corrupt: torch.Tensor) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean inputs {tuple(clean.shape)} and corrupted inputs {tuple(corrupt.shape)} differ")


def _layout(n_pairs: int, n_sets: int, batch_size: int) -> list[tuple[list[int], list[int]]]:
    """Passes as (pairs, patch sets): all sets of several pairs per pass, or chunks of sets of one pair."""
    if batch_size < 3:
        raise ValueError(f"batch_size must be at least 3 (clean, corrupted and one patched row), got {batch_size}")
    if n_sets + 2 <= batch_size:
        per_pass = batch_size // (n_sets + 2)
        return [
            (list(range(start, min(start + per_pass, n_pairs))), list(range(n_sets)))
            for start in range(0, n_pairs, per_pass)
        ]
    chunk = batch_size - 2
    return [
        ([q], list(range(start, min(start + chunk, n_sets))))
        for q in range(n_pairs)
        for start in range(0, n_sets, chunk)
    ]


def _first_block(patch_set: Sequence[Component], n_layers: int) -> int:
    """The first block a patch set touches; sites after the blocks (the attention pool) and the empty set
    count as the last block."""
    return min((n_layers - 1 if c.layer is None else c.layer for c in patch_set), default=n_layers - 1)


class _SharedPrefix:
    """Which rows of a pass are present at each block, and the pre-hooks that copy rows in (module docstring).

    ``first_B[r]`` is the first block of row r (0 for the clean and corrupted runs), ``base_B[r]`` the
    row it equals before then. ``rows_at[l]`` are the rows present in block l, in pass order; ``at[l][r]``
    is row r's position there. After the last block every row is present in pass order.
    """

    def __init__(self, first_B: list[int], base_B: list[int], n_layers: int):
        self.rows_at = [[r for r, first in enumerate(first_B) if first <= layer] for layer in range(n_layers)]
        self.at = [{r: i for i, r in enumerate(rows)} for rows in self.rows_at]
        self.gather = [torch.tensor(self.rows_at[0])]
        for layer in range(1, n_layers):
            before = self.at[layer - 1]
            self.gather.append(torch.tensor([before.get(r, before.get(base_B[r])) for r in self.rows_at[layer]]))

    def position(self, row: int, layer: int | None) -> int:
        """Row r's position in block ``layer`` (None: after the blocks, where rows are in pass order)."""
        return row if layer is None else self.at[layer][row]

    def register(self, blocks: Sequence[nn.Module]) -> list:
        return [
            expand_rows(block, gather_rows(self.gather[layer]))
            for layer, block in enumerate(blocks)
            if layer == 0 or len(self.rows_at[layer]) != len(self.rows_at[layer - 1])
        ]


@torch.inference_mode()
def sweep(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    patch_sets: Sequence[Sequence[Component]],
    *,
    direction: str = "denoising",
    batch_size: int = 256,
    corruption=None,
    share_prefix: bool = True,
) -> SweepResult:
    """Run every patch set on every pair, batched (methods.md Sec. 8; ROME's layout).

    Parameters
    ----------
    model : torch.nn.Module
        The model whose hook sites the components name (:func:`clipmech.hooks.sites.hooked`).
    forward : callable
        ``forward(inputs_B...) -> outputs_B...``: the run, e.g. ``model.encode_image``.
    metric : callable
        ``metric(outputs_B..., pairs_B) -> m_B``: the metric of each row, given the pair (int64, (B,))
        each row belongs to; outputs in a half dtype (a forward under extraction.precision's autocast,
        :mod:`clipmech.models.precision`) reach it as float32.
    clean, corrupt : torch.Tensor, (Q, ...)
        Inputs of the clean and corrupted run of each pair. For embedding corruptions both are the
        clean inputs and ``corruption`` corrupts the corrupted rows.
    patch_sets : sequence of K sequences of Component
        The components each patched copy takes from its source run (one set per copy).
    direction : {"denoising", "noising"}
    batch_size : int
        Rows per forward pass (at least 3).
    corruption : object with ``applied(rows_B, pairs_B)``, optional
        A context manager factory (:class:`clipmech.patching.corruptions.EmbeddingCorruption`) that
        corrupts the rows of the corrupted input: the corrupted run, and the patched copies when
        denoising.
    share_prefix : bool
        Run the blocks before a copy's first patched block once for its base run (module docstring);
        only float rounding differs from False. All components must then be of one tower.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        For an unknown direction, inputs of different shapes, or a batch size below 3; during the
        forward, as :func:`clipmech.hooks.sites.hooked` for unknown sites or out-of-range indices.
    """
    _check(direction, clean, corrupt)
    n_pairs, n_sets = clean.shape[0], len(patch_sets)
    m_clean = np.full(n_pairs, np.nan)
    m_corrupt = np.full(n_pairs, np.nan)
    m_patched = np.full((n_pairs, n_sets), np.nan)
    towers = {c.site.split(".")[0] for patch_set in patch_sets for c in patch_set}
    if share_prefix and len(towers) > 1:
        raise ValueError(f"share_prefix needs the components of one tower; the patch sets name {sorted(towers)}")
    blocks = tower(model, towers.pop()).blocks if share_prefix and towers else None
    for pairs, sets in _layout(n_pairs, n_sets, batch_size):
        inputs, pair_of, corrupted, targets, first_B, base_B, placed = [], [], [], [], [], [], []
        for q in pairs:
            clean_row, corrupt_row = len(inputs), len(inputs) + 1
            inputs += [clean[q], corrupt[q]]
            pair_of += [q, q]
            corrupted += [False, True]
            first_B += [0, 0]
            base_B += [clean_row, corrupt_row]
            base, source = (corrupt, clean_row) if direction == "denoising" else (clean, corrupt_row)
            base_row = corrupt_row if direction == "denoising" else clean_row
            for k in sets:
                row = len(inputs)
                inputs.append(base[q])
                pair_of.append(q)
                corrupted.append(direction == "denoising")
                first_B.append(_first_block(patch_sets[k], len(blocks)) if blocks else 0)
                base_B.append(base_row)
                targets.append((q, k, row))
                placed += [(row, source, component) for component in patch_sets[k]]
            targets += [(q, "clean", clean_row), (q, "corrupt", corrupt_row)]
        prefix = _SharedPrefix(first_B, base_B, len(blocks)) if blocks else None
        entries: dict[str, list] = {}
        for row, source, c in placed:
            if prefix is not None:
                row, source = prefix.position(row, c.layer), prefix.position(source, c.layer)
            entries.setdefault(c.site, []).append((row, source, c.index))
        pairs_B = torch.tensor(pair_of)
        context = corruption.applied(torch.tensor(corrupted), pairs_B) if corruption is not None else nullcontext()
        edits = {site: _restorer(site_entries) for site, site_entries in entries.items()}
        handles = prefix.register(blocks) if prefix is not None else []
        try:
            with context, hooked(model, edit=edits):
                outputs = forward(torch.stack(inputs))
        finally:
            for handle in handles:
                handle.remove()
        m_B = metric(_float32(outputs), pairs_B.to(outputs.device)).double().cpu().numpy()
        for q, k, row in targets:
            if k == "clean":
                m_clean[q] = m_B[row]
            elif k == "corrupt":
                m_corrupt[q] = m_B[row]
            else:
                m_patched[q, k] = m_B[row]
    return SweepResult(m_clean, m_corrupt, m_patched, direction)


def loop_sweep(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    patch_sets: Sequence[Sequence[Component]],
    *,
    direction: str = "denoising",
) -> SweepResult:
    """The same sweep as :func:`sweep` without batching: one forward pass per pair and patch set.

    The source run's activations are captured first, then each patched run replaces its components
    with them. The reference of the tests and the baseline of ``benchmarks/patching.py``; no
    embedding corruptions (pass corrupted inputs).

    Raises
    ------
    ValueError
        For an unknown direction or inputs of different shapes.
    """
    _check(direction, clean, corrupt)
    sites = sorted({c.site for s in patch_sets for c in s})
    n_pairs = clean.shape[0]
    m_clean, m_corrupt = np.empty(n_pairs), np.empty(n_pairs)
    m_patched = np.empty((n_pairs, len(patch_sets)))
    with torch.inference_mode():
        for q in range(n_pairs):
            pair = torch.tensor([q])
            runs = {}
            for role, inputs in (("clean", clean), ("corrupt", corrupt)):
                with hooked(model, capture=sites) as cache:
                    runs[role] = float(metric(_float32(forward(inputs[q : q + 1])), pair)[0])
                    runs[role + "_acts"] = {site: cache[site] for site in sites}
            m_clean[q], m_corrupt[q] = runs["clean"], runs["corrupt"]
            base, source = (corrupt, runs["clean_acts"]) if direction == "denoising" else (clean, runs["corrupt_acts"])
            for k, patch_set in enumerate(patch_sets):
                edits = {}
                for site in {c.site for c in patch_set}:
                    indices = [c.index for c in patch_set if c.site == site]
                    edits[site] = _replacer(source[site], indices)
                with hooked(model, edit=edits):
                    m_patched[q, k] = float(metric(_float32(forward(base[q : q + 1])), pair)[0])
    return SweepResult(m_clean, m_corrupt, m_patched, direction)


def _replacer(source: torch.Tensor, indices: list[tuple]) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        for index in indices:
            where = (slice(None), *(slice(None) if i is None else i for i in index))
            new[where] = source[where]
        return new

    return edit
