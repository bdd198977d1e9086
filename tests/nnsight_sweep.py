"""The patching sweep of :mod:`clipmech.patching.engine`, written a second time with nnsight.

The oracle of ``tests/unit/patching/test_nnsight_oracle.py`` and a timed baseline of
``benchmarks/patching.py``. It shares no code with :mod:`clipmech.hooks.sites` or the engine: each
component is located here from its family and labels (``Component.layer``, ``position``, ``unit``)
on the open_clip module tree, read by one nnsight trace of the source run, and written into one
trace of the base run per patch set (all pairs of a set in that trace). nnsight replaces the
``forward`` of every module it wraps, for good, which slows every later run of the module; it wraps
a copy of the model here, so the caller's model stays as it was.

========================  =====================================================
family                    value in block ``layer`` of the tower
========================  =====================================================
``resid_pre``             the block's input
``attn_out``              output of ``ls_1``
``neuron``                output of ``mlp.gelu``
``mlp_out``               output of ``mlp``
========================  =====================================================

A component with a ``position`` is that token (all units), one with a ``unit`` is that neuron at
every token, one with neither (``components.layer_component``) the whole tensor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import nnsight
import numpy as np
import torch
from torch import nn

from clipmech.patching.engine import SweepResult

#: Family -> (path inside the block, "input" or "output"), in the order a block computes them.
FAMILY_VALUES = {
    "resid_pre": ("", "input"),
    "attn_out": ("ls_1", "output"),
    "neuron": ("mlp.gelu", "output"),
    "mlp_out": ("mlp", "output"),
}
_ORDER = {family: rank for rank, family in enumerate(FAMILY_VALUES)}


def _blocks(wrapped: nnsight.NNsight, tower_name: str):
    """The envoys of the tower's residual blocks (open_clip ViT or the text tower flattened into CLIP)."""
    if tower_name == "visual":
        return wrapped.visual.transformer.resblocks
    if tower_name == "text":
        return wrapped.transformer.resblocks
    raise ValueError(f"unknown tower {tower_name!r}; valid: visual, text")


def _envoy(blocks, place: tuple[int, str]):
    layer, family = place
    path = FAMILY_VALUES[family][0]
    envoy = blocks[layer]
    for name in path.split(".") if path else ():
        envoy = getattr(envoy, name)
    return envoy


def _read(blocks, place: tuple[int, str]) -> torch.Tensor:
    envoy = _envoy(blocks, place)
    return envoy.input if FAMILY_VALUES[place[1]][1] == "input" else envoy.output


def _write(blocks, place: tuple[int, str], value: torch.Tensor) -> None:
    envoy = _envoy(blocks, place)
    if FAMILY_VALUES[place[1]][1] == "input":
        envoy.input = value
    else:
        envoy.output = value


def _where(component) -> tuple:
    """The slice of the (N, T, ...) value that the component is."""
    if component.position is not None:
        return (slice(None), component.position)
    if component.unit is not None:
        return (slice(None), slice(None), component.unit)
    return (slice(None),)


def _numpy(m_Q: torch.Tensor) -> np.ndarray:
    return m_Q.double().cpu().numpy()


def nnsight_sweep(
    model: nn.Module,
    tower_name: str,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    corrupt: torch.Tensor,
    patch_sets: Sequence[Sequence],
    *,
    direction: str = "denoising",
) -> SweepResult:
    """:func:`clipmech.patching.engine.sweep` through nnsight: one trace of the source run, then one per patch set.

    Parameters
    ----------
    model : open_clip.CLIP
        With an open_clip ViT image tower (``tower_name="visual"``) or its text tower (``"text"``).
    tower_name : {"visual", "text"}
        The run is ``model.encode_image`` or ``model.encode_text``.
    metric : callable
        ``metric(outputs_QE, pairs_Q) -> m_Q``, as the engine's.
    clean, corrupt : torch.Tensor, (Q, ...)
        Pixels or token ids.
    patch_sets : sequence of K sequences of clipmech.patching.components.Component
        Of the families in ``FAMILY_VALUES``.
    direction : {"denoising", "noising"}

    Returns
    -------
    clipmech.patching.engine.SweepResult
    """
    if direction not in ("denoising", "noising"):
        raise ValueError(f"unknown direction {direction!r}; valid: denoising, noising")
    wrapped = nnsight.NNsight(copy.deepcopy(model))
    fn = "encode_image" if tower_name == "visual" else "encode_text"
    blocks = _blocks(wrapped, tower_name)
    base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
    pairs_Q = torch.arange(clean.shape[0])
    places = sorted({(c.layer, c.family) for s in patch_sets for c in s}, key=lambda p: (p[0], _ORDER[p[1]]))
    m_patched = np.empty((clean.shape[0], len(patch_sets)))
    with torch.inference_mode():
        saved = {}
        with wrapped.trace(source, fn=fn) as tracer:
            for place in places:
                saved[place] = _read(blocks, place).save()
            source_out = tracer.result.save()
        with wrapped.trace(base, fn=fn) as tracer:
            base_out = tracer.result.save()
        for k, patch_set in enumerate(patch_sets):
            by_place: dict[tuple, list] = {}
            for c in patch_set:
                by_place.setdefault((c.layer, c.family), []).append(c)
            with wrapped.trace(base, fn=fn) as tracer:
                for place in sorted(by_place, key=lambda p: (p[0], _ORDER[p[1]])):
                    value = _read(blocks, place).clone()
                    for c in by_place[place]:
                        value[_where(c)] = saved[place][_where(c)]
                    _write(blocks, place, value)
                out = tracer.result.save()
            m_patched[:, k] = _numpy(metric(out, pairs_Q.to(out.device)))
        m_source = _numpy(metric(source_out, pairs_Q.to(source_out.device)))
        m_base = _numpy(metric(base_out, pairs_Q.to(base_out.device)))
    m_clean, m_corrupt = (m_source, m_base) if direction == "denoising" else (m_base, m_source)
    return SweepResult(m_clean, m_corrupt, m_patched, direction)
