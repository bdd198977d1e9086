"""What causal tracing costs, known before the run: forward passes and FLOPs of rule ``patch_components``.

Causal tracing (methods.md Sec. 8) runs every patch set on every pair (:func:`clipmech.patching.engine.sweep`:
one forward pass per pair and set, plus each pair's clean and corrupted runs), for every corruption and
both towers: the single-component sweep of every component of ``patching.families`` per direction, and
circuit sparsity over the heads and MLPs (``units``) and over the path components (``paths``), whose
components not in the single sweep are swept singly first, then about ``circuit.n_points`` prefixes per
order (greedy and ``circuit.n_random`` random) plus a bisection. :func:`tracing_cost` counts these passes
from the config and the model's towers, built on PyTorch's meta device (no weights, no memory), and
multiplies them by the FLOPs of one forward pass of each tower (``torch.utils.flop_counter`` on the meta
model). ``patching.layers`` and ``patching.positions`` shrink the component sets.

The counts are upper bounds in two places: a caption's positions are its tower's full context (the run
sweeps up to the longest caption only), and the bisection is counted at its longest. The attention-pool
families of a CLIP-ResNet rerun only the pool: they are counted as passes but not in the FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clipmech.config import Config
from clipmech.patching.components import MLP_UNITS, POOL_FAMILIES


@dataclass(frozen=True)
class TracingCost:
    """The passes and FLOPs of causal tracing of one model on one pairs dataset.

    Attributes
    ----------
    model, dataset : str
    n_pairs : int
        Pairs per corruption (``patching.n_pairs``, at most the dataset's scenes).
    passes : dict of str to int
        Forward passes of the whole tower per tower (``visual``, ``text``), every corruption together.
    pool_passes : int
        Passes of a CLIP-ResNet's attention pool alone (0 for a ViT).
    flops_per_pass : dict of str to float
        FLOPs of one forward pass of one input per tower.
    """

    model: str
    dataset: str
    n_pairs: int
    passes: dict
    pool_passes: int
    flops_per_pass: dict

    @property
    def flops(self) -> float:
        """FLOPs of the whole-tower passes (the attention-pool passes left out)."""
        return sum(self.passes[tower] * self.flops_per_pass[tower] for tower in self.passes)


def _prefix_sets(n_components: int, n_points: int, n_random: int) -> tuple[int, int]:
    """(sets, sweeps) of one circuit curve: its grid of prefixes (measures.prefix_sizes) in one sweep, then
    the bisection of measures.crossing, one sweep per step, every order."""
    steps = math.ceil(math.log2(max(n_components, 2)))
    return (1 + n_random) * (min(n_components, n_points) + steps), 1 + steps


def _family_size(info, family: str, n_layers: int, n_positions: int) -> int:
    per_layer = {
        "resid_pre": n_positions,
        "attn_out": n_positions,
        "mlp_out": n_positions,
        "head": info.n_heads,
        "neuron": info.d_mlp or 0,
        "mlp": 1,
        "stage": 1,
    }
    if family in per_layer:
        return n_layers * per_layer[family]
    return {"pool_token": n_positions, "pool_head": info.n_heads, "pool_neuron": info.width}[family]


def tower_sets(info, patching) -> tuple[int, int, int]:
    """(whole-tower sets, attention-pool sets, sweeps) per pair of one tower under one corruption: a sweep
    also runs each pair's clean and corrupted inputs once (more when its sets span several batches)."""
    circuit = patching.circuit
    layers, positions = patching.layers, patching.positions
    n_layers = info.n_layers if layers is None else sum(layer < info.n_layers for layer in layers)
    n_positions = info.n_tokens if positions is None else sum(p < info.n_tokens for p in positions)
    kind = "resnet" if info.kind == "resnet" else "transformer"
    families = list(getattr(patching.families, kind))
    full = pool = 0
    sweeps = len(patching.directions) * len(families)
    for family in families:
        size = len(patching.directions) * _family_size(info, family, n_layers, n_positions)
        if family in POOL_FAMILIES:
            pool += size
        else:
            full += size
    if kind == "resnet":  # both circuit views are the pool heads, swept singly first if not traced
        sets, calls = _prefix_sets(info.n_heads, circuit.n_points, circuit.n_random)
        pool += (0 if "pool_head" in families else info.n_heads) + 2 * sets
        return full, pool, sweeps + 2 * calls + 1
    mlp = MLP_UNITS[circuit.mlp]
    units = _family_size(info, "head", n_layers, n_positions) + _family_size(info, mlp, n_layers, n_positions)
    singles = sum(_family_size(info, f, n_layers, n_positions) for f in ("head", mlp) if f not in families)
    singles += sum(
        n_positions if f == "resid_pre" else n_layers * n_positions
        for f in ("resid_pre", "attn_out", "mlp_out")
        if f not in families
    )
    paths = n_positions + 2 * n_layers * n_positions
    for n in (units, paths):
        sets, calls = _prefix_sets(n, circuit.n_points, circuit.n_random)
        full, sweeps = full + sets, sweeps + calls + 1
    return full + singles, pool, sweeps + 1  # + the baseline


def meta_model(config: Config, model: str):
    """The model's architecture at its configured sizes with random weights on PyTorch's meta device (no memory, no
    weights)."""
    from clipmech.models import loading

    return loading.meta_model(config.models[model].architecture, **config.models[model].sizes)


def forward_flops(clip, info) -> float:
    """FLOPs of one forward pass of one input through a tower (``torch.utils.flop_counter``, meta tensors)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        if info.name == "visual":
            clip.encode_image(torch.empty(1, 3, *info.image_size))
        else:
            clip.encode_text(torch.zeros(1, info.n_tokens, dtype=torch.long))
    return float(counter.get_total_flops())


def tracing_cost(config: Config, model: str, dataset: str) -> TracingCost:
    """Forward passes and FLOPs of causal tracing of ``model`` on the pairs or captions dataset ``dataset`` (module
    docstring; pairs per corruption: :meth:`clipmech.config.Config.tracing_pairs`)."""
    from clipmech.models.towers import tower

    patching = config.patching
    n_pairs = config.tracing_pairs(dataset)
    n_corruptions = len(config.tracing_corruptions(dataset))
    clip = meta_model(config, model)
    passes, flops, pool_passes = {}, {}, 0
    for name in ("visual", "text"):
        info = tower(clip, name)
        full, pool, sweeps = tower_sets(info, patching)
        per_corruption = n_pairs * (full + 2 * sweeps)
        passes[name] = n_corruptions * per_corruption
        pool_passes += n_corruptions * n_pairs * pool
        flops[name] = forward_flops(clip, info)
    return TracingCost(model, dataset, n_pairs, passes, pool_passes, flops)


def format_costs(costs: list[TracingCost], tflops: float) -> str:
    """One line per traced pair: passes, PFLOP and hours at ``tflops`` TFLOP/s sustained."""
    lines = [f"{'causal tracing (patch_components)':<44} {'pairs':>6} {'passes':>12} {'PFLOP':>10} {'hours':>8}"]
    for cost in costs:
        name = f"{cost.model} on {cost.dataset}"
        passes = sum(cost.passes.values())
        hours = cost.flops / (tflops * 1e12) / 3600
        lines.append(f"{name:<44} {cost.n_pairs:>6} {passes:>12,} {cost.flops / 1e15:>10.3g} {hours:>8.3g}")
    lines.append(
        f"(hours at {tflops:g} TFLOP/s sustained; shrink with patching.layers, patching.positions, patching.n_pairs, "
        "patching.families, patching.circuit.n_points / n_random)"
    )
    return "\n".join(lines)
