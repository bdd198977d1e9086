"""Hook sites: one vocabulary of activation names for both towers; capture, replace, edit (methods.md Sec. 6).

Names follow TransformerLens, prefixed by the tower (``visual`` or ``text``); layers are canonical
non-negative block indices (:func:`canonical_name` turns ``-1`` into the last block). Every site
resolves to a module of open_clip (or timm, for SigLIP's trunk) and a position, its input or output.
Shapes are batch-first (open_clip 3.x; asserted on every hooked tensor): N images or prompts, T tokens
(vision: prefix tokens first, then the patches in raster order; text: L <= context length), D residual
width, H heads, d_head = D / H, D_mlp the MLP hidden width.

Transformer towers (kinds ``vit``, ``timm``, ``text``), for each block l:

======================================  ================================================  ==================
site                                    resolves to                                       tensor
======================================  ================================================  ==================
``{tower}.blocks.{l}.hook_resid_pre``   input of the block                                (N, T, D)
``{tower}.blocks.{l}.hook_attn_out``    output of ``ls_1`` (timm: ``drop_path1``), the    (N, T, D)
                                        attention output added to the residual stream
``{tower}.blocks.{l}.hook_resid_mid``   input of ``ln_2`` (timm: ``norm2``)               (N, T, D)
``{tower}.blocks.{l}.hook_mlp_out``     output of ``mlp`` (the units of methods.md Sec. 2;  (N, T, D)
                                        before the layer scale ``ls_2`` if any)
``{tower}.blocks.{l}.hook_resid_post``  output of the block                               (N, T, D)
``{tower}.blocks.{l}.mlp.hook_post``    output of the MLP activation (``mlp.gelu``;       (N, T, D_mlp)
                                        timm: ``mlp.act``), the hidden neurons
``{tower}.blocks.{l}.attn.hook_z``      per-head mixed values z_h, computed from the      (N, T, H, d_head)
                                        input of ``attn`` (timm: input of ``attn.proj``)
``{tower}.blocks.{l}.attn.hook_result`` per-head results z_h W_O^h, same module           (N, T, H, D)
======================================  ================================================  ==================

resid_pre + attn_out = resid_mid and resid_mid + ls_2(mlp_out) = resid_post; without layer scale (all
paper models) ls_2 is the identity. For ``nn.MultiheadAttention`` (open_clip ViT and text) z_h =
softmax(q_h k_h^T / sqrt(d_head) + mask) v_h with the mask the block passes (the text tower's causal
mask); for timm's ``Attention`` z is the input of ``attn.proj`` reshaped to (N, T, H, d_head). In both,
sum_h result_h + b_O is the attention module's output.

CLIP-ResNet (kind ``resnet``), the four stages and the attention pool (methods.md Sec. 5):

======================================  ================================================  ==================
site                                    resolves to                                       tensor
======================================  ================================================  ==================
``visual.blocks.{l}.hook_resid_post``   output of stage ``layer{l+1}`` (Grad-CAM's        (N, C_l, h_l, w_l)
                                        ``layer4`` is ``visual.blocks.3.hook_resid_post``)
``visual.attnpool.hook_x``              tokens from the input of ``attnpool``: token 0    (N, T, C)
                                        the mean token, positional embedding included
``visual.attnpool.hook_alpha``          attention of the query (token 0) per head         (N, H, T)
``visual.attnpool.hook_result``         per-head output W_c^h (W_v^h sum_t alpha x_t +   (N, H, E)
                                        b_v^h); sum over heads + b_c = the output
``visual.attnpool.hook_out``            output of ``attnpool``                            (N, E)
======================================  ================================================  ==================

:func:`hooked` captures, replaces or edits any set of sites during forward passes. Capturing never
changes the model's output. Replacing or editing a site that is a module input or output patches that
tensor (resid_pre through a forward-pre-hook on the block; resid_mid through one on ``ln_2`` plus a
fix-up of the block output, because the block adds its own copy of resid_mid); replacing or editing a
derived site (z, result, attnpool x / alpha / result) recomputes the module's output from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipmech.hooks.names import (
    ATTNPOOL_HOOKS,
    ATTNPOOL_PATTERN,
    BLOCK_PATTERN,
    CHANNEL_HOOKS,
    HEAD_HOOKS,
    RESNET_HOOKS,
    TRANSFORMER_HOOKS,
)
from clipmech.hooks.pool_forward import attnpool_tokens, query_attention
from clipmech.models.towers import TOWER_NAMES, Tower, tower

LAYOUTS = {
    "hook_resid_pre": "(N, T, D)",
    "hook_attn_out": "(N, T, D)",
    "hook_resid_mid": "(N, T, D)",
    "hook_mlp_out": "(N, T, D)",
    "hook_resid_post": "(N, T, D)",
    "mlp.hook_post": "(N, T, D_mlp)",
    "attn.hook_z": "(N, T, H, d_head)",
    "attn.hook_result": "(N, T, H, D)",
    "resnet.hook_resid_post": "(N, C, h, w)",
    "attnpool.hook_x": "(N, T, C)",
    "attnpool.hook_alpha": "(N, H, T)",
    "attnpool.hook_result": "(N, H, E)",
    "attnpool.hook_out": "(N, E)",
}

# Per tower kind: hook -> (attribute path from the block, position).
_OPEN_CLIP_PARTS = {
    "hook_resid_pre": ("", "input"),
    "hook_attn_out": ("ls_1", "output"),
    "hook_resid_mid": ("ln_2", "input"),
    "hook_mlp_out": ("mlp", "output"),
    "hook_resid_post": ("", "output"),
    "mlp.hook_post": ("mlp.gelu", "output"),
    "attn.hook_z": ("attn", "input"),
    "attn.hook_result": ("attn", "input"),
}
_TIMM_PARTS = {
    "hook_resid_pre": ("", "input"),
    "hook_attn_out": ("drop_path1", "output"),
    "hook_resid_mid": ("norm2", "input"),
    "hook_mlp_out": ("mlp", "output"),
    "hook_resid_post": ("", "output"),
    "mlp.hook_post": ("mlp.act", "output"),
    "attn.hook_z": ("attn.proj", "input"),
    "attn.hook_result": ("attn.proj", "input"),
}
_PARTS = {"vit": _OPEN_CLIP_PARTS, "text": _OPEN_CLIP_PARTS, "timm": _TIMM_PARTS}
# The module whose output is the second addend of the block, resid_post = resid_mid + addend.
_MLP_ADDEND = {"vit": "ls_2", "text": "ls_2", "timm": "drop_path2"}


@dataclass(frozen=True)
class Site:
    """A resolved hook site (methods.md Sec. 6; the vocabulary is in the module docstring).

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"visual.blocks.3.hook_mlp_out"`` or ``"visual.attnpool.hook_alpha"``.
    tower : {"visual", "text"}
    layer : int or None
        Block (ResNet: stage) index, 0-based; None for the attention pool.
    hook : str
        The name after the layer: ``"hook_mlp_out"``, ``"attn.hook_z"``; ``"attnpool.hook_x"``.
    module : torch.nn.Module
        The module the site's hook is registered on.
    position : {"input", "output"}
        Whether the site is (computed from) the module's first input or its output.
    layout : str
        The tensor's shape, e.g. ``"(N, T, D)"``.
    """

    name: str
    tower: str
    layer: int | None
    hook: str
    module: nn.Module
    position: str
    layout: str


def _towers(model: nn.Module, name: str | None) -> list[Tower]:
    if name is not None:
        return [tower(model, name)]
    found = []
    for candidate in TOWER_NAMES:
        try:
            found.append(tower(model, candidate))
        except TypeError:
            continue
    return found


def _submodule(block: nn.Module, path: str) -> nn.Module:
    return block.get_submodule(path) if path else block


def _heads_unsupported(info: Tower, block: nn.Module) -> str | None:
    """Why per-head sites are not available on this block, or None if they are."""
    attn = block.attn
    if info.kind in ("vit", "text"):
        if not isinstance(attn, nn.MultiheadAttention):
            return f"its attention is {type(attn).__name__}, not nn.MultiheadAttention"
        if not attn.batch_first or not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
            return "its nn.MultiheadAttention is not batch-first self-attention with one in_proj and no bias_k"
        return None
    if not isinstance(getattr(attn, "proj", None), nn.Linear) or not hasattr(attn, "head_dim"):
        return f"its attention {type(attn).__name__} has no proj Linear / head_dim"
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) or getattr(attn, "gate", None) is not None:
        return "its attention normalises or gates z before attn.proj"
    return None


def _tower_hooks(info: Tower) -> tuple[str, ...]:
    if info.kind == "resnet":
        return RESNET_HOOKS
    if _heads_unsupported(info, info.blocks[0]) is not None:
        return CHANNEL_HOOKS
    return TRANSFORMER_HOOKS


def site_names(model: nn.Module, tower: str | None = None) -> list[str]:
    """All valid site names of a model, in depth order per tower.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    tower : {"visual", "text"}, optional
        Only this tower; by default every tower whose kind is supported (others are skipped).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError, TypeError
        As :func:`clipmech.models.towers.tower`, for an explicitly named tower.
    """
    names = []
    for info in _towers(model, tower):
        hooks = _tower_hooks(info)
        names += [f"{info.name}.blocks.{layer}.{hook}" for layer in range(info.n_layers) for hook in hooks]
        if info.has_attnpool:
            names += [f"{info.name}.attnpool.{hook}" for hook in ATTNPOOL_HOOKS]
    return names


def _summary(model: nn.Module) -> str:
    """The valid names of a model, one line per pattern, with the layer range."""
    lines = []
    for info in _towers(model, None):
        example = f"{info.name}.blocks.{info.n_layers - 1}.{_tower_hooks(info)[-1]}"
        lines.append(
            f"  {info.name}.blocks.{{l}}.{{hook}} for l in 0..{info.n_layers - 1} and hook in "
            f"{', '.join(_tower_hooks(info))} (e.g. {example!r})"
        )
        if info.has_attnpool:
            lines.append("  " + ", ".join(f"{info.name}.attnpool.{hook}" for hook in ATTNPOOL_HOOKS))
    return "\n".join(lines)


def _unknown(model: nn.Module, name: str, why: str) -> ValueError:
    return ValueError(f"unknown site {name!r} for {type(model).__name__}: {why}; valid names are:\n{_summary(model)}")


def _parse(model: nn.Module, name: str) -> tuple[Tower, int | None, str]:
    """(tower, layer as written, hook) of a name; the layer may still be negative or out of range."""
    if not isinstance(name, str):
        raise TypeError(f"a site name must be a str, got {type(name).__name__} {name!r}")
    block_match = BLOCK_PATTERN.fullmatch(name)
    pool_match = ATTNPOOL_PATTERN.fullmatch(name)
    match = block_match or pool_match
    if match is None:
        raise _unknown(model, name, "not of the form '<tower>.blocks.<l>.<hook>' or 'visual.attnpool.<hook>'")
    if match.group(1) not in TOWER_NAMES:
        raise _unknown(model, name, f"unknown tower {match.group(1)!r} (towers: {', '.join(TOWER_NAMES)})")
    info = tower(model, match.group(1))
    if pool_match is not None:
        if not info.has_attnpool:
            raise _unknown(model, name, f"the {info.kind} {info.name} tower has no attention pool")
        if pool_match.group(2) not in ATTNPOOL_HOOKS:
            raise _unknown(model, name, f"attnpool hooks are {', '.join(ATTNPOOL_HOOKS)}")
        return info, None, "attnpool." + pool_match.group(2)
    layer, hook = int(block_match.group(2)), block_match.group(3)
    if hook not in _tower_hooks(info):
        extra = ""
        if hook in HEAD_HOOKS and info.kind != "resnet":
            extra = f" (no per-head sites: {_heads_unsupported(info, info.blocks[0])})"
        raise _unknown(model, name, f"{hook!r} is not a hook of the {info.kind} {info.name} tower{extra}")
    if not -info.n_layers <= layer < info.n_layers:
        raise ValueError(
            f"site {name!r}: layer {layer} out of range; the {info.name} tower has {info.n_layers} blocks, "
            f"layers 0..{info.n_layers - 1}"
        )
    return info, layer, hook


def canonical_name(model: nn.Module, name: str) -> str:
    """The canonical form of a site name: negative layers counted from the end (``-1`` = last block).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or a layer outside -L..L-1.
    """
    info, layer, hook = _parse(model, name)
    if layer is None:
        return name
    return f"{info.name}.blocks.{layer % info.n_layers}.{hook}"


def resolve(model: nn.Module, name: str) -> Site:
    """Resolve a canonical site name on a model (methods.md Sec. 6).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    name : str
        A name from :func:`site_names`.

    Returns
    -------
    Site

    Raises
    ------
    ValueError
        If the name is unknown for this model (the message lists the valid names as patterns with
        their layer range), its layer is out of range (the message gives the range), or it has a
        negative layer (the message gives the canonical name).
    TypeError
        If the named tower's kind is not supported (see :func:`clipmech.models.towers.tower`).
    """
    info, layer, hook = _parse(model, name)
    if layer is None:
        position = "output" if hook == "attnpool.hook_out" else "input"
        return Site(name, info.name, None, hook, model.visual.attnpool, position, LAYOUTS[hook])
    if layer < 0:
        raise ValueError(
            f"site {name!r}: names use non-negative layers; canonical_name() gives {canonical_name(model, name)!r}"
        )
    block = info.blocks[layer]
    if info.kind == "resnet":
        return Site(name, info.name, layer, hook, block, "output", LAYOUTS["resnet.hook_resid_post"])
    path, position = _PARTS[info.kind][hook]
    return Site(name, info.name, layer, hook, _submodule(block, path), position, LAYOUTS[hook])


class ActivationCache:
    """The activations of the captured sites during the latest forward pass(es); see :func:`hooked`.

    ``cache[name]`` is the detached tensor the model used at that site (after any replacement or edit
    of the same site), from the most recent forward through it. Call :meth:`reset` between batches.
    """

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)
        self._acts: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(f"site {name!r} is not captured; captured sites: {', '.join(self.names) or 'none'}")
        if name not in self._acts:
            raise KeyError(f"captured site {name!r} did not run since the last reset(); did the forward pass reach it?")
        return self._acts[name]

    def __contains__(self, name: object) -> bool:
        return name in self._acts

    def keys(self) -> list[str]:
        """The captured sites that ran since the last reset, in the order of ``names``."""
        return [name for name in self.names if name in self._acts]

    def reset(self) -> None:
        """Forget all captured activations."""
        self._acts.clear()


class _Interventions:
    """Applies replace, edit and capture, in that order, to the activation of one site."""

    def __init__(self, capture: Sequence[str], replace: Mapping, edit: Mapping, towers: dict[str, Tower]):
        self.capture = set(capture)
        self.replace = replace
        self.edit = edit
        self.towers = towers
        self.cache = ActivationCache(capture)

    def changes(self, site: Site | None) -> bool:
        return site is not None and (site.name in self.replace or site.name in self.edit)

    def _check(self, site: Site, act: torch.Tensor) -> None:
        ndim = site.layout.count(",") + 1
        if not isinstance(act, torch.Tensor) or act.ndim != ndim:
            got = tuple(act.shape) if isinstance(act, torch.Tensor) else type(act).__name__
            raise RuntimeError(f"site {site.name!r}: expected a {site.layout} tensor, got {got}")
        info = self.towers[site.tower]
        if info.kind == "resnet" or site.layer is None:
            return
        n_tokens = act.shape[1]
        if n_tokens > info.n_tokens if info.kind == "text" else n_tokens != info.n_tokens:
            raise RuntimeError(
                f"site {site.name!r}: expected batch-first {site.layout} with T = {info.n_tokens} "
                f"({'at most, ' if info.kind == 'text' else ''}the {info.name} tower's tokens), got "
                f"{tuple(act.shape)}; token-first layouts (open_clip < 3) are not supported"
            )

    def __call__(self, site: Site, act: torch.Tensor) -> torch.Tensor:
        self._check(site, act)
        if site.name in self.replace:
            new = self.replace[site.name]
            if tuple(new.shape) != tuple(act.shape):
                raise ValueError(
                    f"replacement for site {site.name!r} has shape {tuple(new.shape)}, the activation "
                    f"{site.layout} has shape {tuple(act.shape)}"
                )
            act = new.to(device=act.device, dtype=act.dtype)
        if site.name in self.edit:
            new = self.edit[site.name](act)
            if not isinstance(new, torch.Tensor) or tuple(new.shape) != tuple(act.shape):
                got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
                raise ValueError(
                    f"edit of site {site.name!r} must return a tensor of shape {tuple(act.shape)} {site.layout}, "
                    f"got {got}"
                )
            act = new
        if site.name in self.capture:
            self.cache._acts[site.name] = act.detach()
        return act


def _head_output(
    z_NTHd: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, z_site, result_site, apply: _Interventions
) -> torch.Tensor | None:
    """Apply the per-head sites of one attention module; the new module output, or None if unchanged."""
    if z_site is not None:
        z_NTHd = apply(z_site, z_NTHd)
    if result_site is not None:
        n_heads, d_head = z_NTHd.shape[2:]
        w_EHd = weight.reshape(weight.shape[0], n_heads, d_head)
        result_NTHE = apply(result_site, torch.einsum("nthd,ehd->nthe", z_NTHd, w_EHd))
        if apply.changes(result_site):
            out_NTE = result_NTHE.sum(dim=2)
            return out_NTE if bias is None else out_NTE + bias
    if apply.changes(z_site):
        return F.linear(z_NTHd.flatten(2), weight, bias)
    return None


def mha_heads(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-head mixed values z_h = softmax(q_h k_h^T / sqrt(d_head) + mask) v_h (methods.md Sec. 6).

    Recomputes, for a batch-first ``nn.MultiheadAttention`` with one ``in_proj``, what the module
    mixes before ``out_proj``: sum_h z_h W_O^h + b_O is its output.

    Parameters
    ----------
    attn : torch.nn.MultiheadAttention
    query : torch.Tensor, (N, T, D)
    key, value : torch.Tensor, (N, S, D)
    attn_mask : torch.Tensor, optional
        As the module takes it: (T, S) or (N * H, T, S), additive float or bool (True = masked).

    Returns
    -------
    torch.Tensor, (N, T, H, d_head), dtype of ``query``

    Raises
    ------
    ValueError
        If the mask's shape is neither (T, S) nor (N * H, T, S).
    """
    n, t, d_model = query.shape
    s = key.shape[1]
    h = attn.num_heads
    d_head = d_model // h
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    q_NTHd = F.linear(query, w_q, b_q).reshape(n, t, h, d_head)
    k_NSHd = F.linear(key, w_k, b_k).reshape(n, s, h, d_head)
    v_NSHd = F.linear(value, w_v, b_v).reshape(n, s, h, d_head)
    scores_NHTS = torch.einsum("nthd,nshd->nhts", q_NTHd, k_NSHd) * d_head**-0.5
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=scores_NHTS.dtype).masked_fill(attn_mask, float("-inf"))
        if attn_mask.shape == (t, s):
            scores_NHTS = scores_NHTS + attn_mask.to(scores_NHTS.dtype)
        elif attn_mask.shape == (n * h, t, s):
            scores_NHTS = scores_NHTS + attn_mask.reshape(n, h, t, s).to(scores_NHTS.dtype)
        else:
            raise ValueError(
                f"attn_mask has shape {tuple(attn_mask.shape)}; expected (T, S) = {(t, s)} or "
                f"(N * H, T, S) = {(n * h, t, s)}"
            )
    pattern_NHTS = scores_NHTS.softmax(dim=-1)
    return torch.einsum("nhts,nshd->nthd", pattern_NHTS, v_NSHd)


_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")


def _mha_hook(z_site: Site | None, result_site: Site | None, apply: _Interventions):
    def hook(module, args, kwargs, output):
        call = dict(zip(_MHA_ARGS, args))
        call.update(kwargs)
        if call.get("key_padding_mask") is not None or call.get("is_causal", False):
            raise RuntimeError(
                f"per-head sites of {(z_site or result_site).name!r}: key_padding_mask / is_causal are not "
                "supported (open_clip passes the mask as attn_mask)"
            )
        z_NTHd = mha_heads(module, call["query"], call["key"], call["value"], call.get("attn_mask"))
        new = _head_output(z_NTHd, module.out_proj.weight, module.out_proj.bias, z_site, result_site, apply)
        return None if new is None else (new, *output[1:])

    return hook


def _timm_proj_hook(z_site: Site | None, result_site: Site | None, apply: _Interventions, n_heads: int):
    def hook(module, args, output):
        z_flat = args[0]
        z_NTHd = z_flat.reshape(*z_flat.shape[:-1], n_heads, z_flat.shape[-1] // n_heads)
        return _head_output(z_NTHd, module.weight, module.bias, z_site, result_site, apply)

    return hook


def attnpool_results(attnpool: nn.Module, x_NTC: torch.Tensor, alpha_NHT: torch.Tensor) -> torch.Tensor:
    """Per-head outputs of an open_clip ``AttentionPool2d`` (methods.md Sec. 5).

    result_h = W_c^h (W_v^h sum_t alpha_{h,t} x_t + b_v^h), so sum_h result_h + b_c is the module's
    output; in the decomposition's terms result_h = sum_n c_{n,h} + W_c^h b_v^h.

    Parameters
    ----------
    attnpool : torch.nn.Module
        ``model.visual.attnpool``.
    x_NTC : torch.Tensor, (N, T, C)
        Tokens (:func:`clipmech.hooks.pool_forward.attnpool_tokens`).
    alpha_NHT : torch.Tensor, (N, H, T)
        Attention of the query (:func:`clipmech.hooks.pool_forward.query_attention`).

    Returns
    -------
    torch.Tensor, (N, H, E), dtype of ``alpha_NHT``
    """
    h = alpha_NHT.shape[1]
    c = x_NTC.shape[-1]
    dtype = alpha_NHT.dtype
    s_NHC = torch.einsum("nht,ntc->nhc", alpha_NHT, x_NTC.to(dtype))
    w_v_HdC = attnpool.v_proj.weight.to(dtype).reshape(h, c // h, c)
    z_NHd = torch.einsum("nhc,hdc->nhd", s_NHC, w_v_HdC) + attnpool.v_proj.bias.to(dtype).reshape(h, c // h)
    w_c_EHd = attnpool.c_proj.weight.to(dtype).reshape(-1, h, c // h)
    return torch.einsum("nhd,ehd->nhe", z_NHd, w_c_EHd)


def _attnpool_hook(sites: dict[str, Site], apply: _Interventions):
    x_site, alpha_site = sites.get("attnpool.hook_x"), sites.get("attnpool.hook_alpha")
    result_site, out_site = sites.get("attnpool.hook_result"), sites.get("attnpool.hook_out")

    def hook(module, args, output):
        new = None
        if x_site or alpha_site or result_site:
            x_NTC = attnpool_tokens(args[0], module.positional_embedding)
            if x_site is not None:
                x_NTC = apply(x_site, x_NTC)
            alpha_NHT = query_attention(
                x_NTC, module.q_proj.weight, module.q_proj.bias, module.k_proj.weight, module.num_heads
            )
            if alpha_site is not None:
                alpha_NHT = apply(alpha_site, alpha_NHT)
            changed = apply.changes(x_site) or apply.changes(alpha_site)
            if result_site is not None or changed:
                result_NHE = attnpool_results(module, x_NTC, alpha_NHT)
                if result_site is not None:
                    result_NHE = apply(result_site, result_NHE)
                if changed or apply.changes(result_site):
                    new = (result_NHE.sum(dim=1) + module.c_proj.bias.to(result_NHE.dtype)).to(output.dtype)
        if out_site is not None:
            new = apply(out_site, output if new is None else new)
        return new

    return hook


def _output_hook(site: Site, apply: _Interventions):
    def hook(module, args, output):
        return apply(site, output)

    return hook


def _input_hook(site: Site, apply: _Interventions):
    def hook(module, args):
        return (apply(site, args[0]), *args[1:])

    return hook


def _register_resid_mid(site: Site, info: Tower, apply: _Interventions) -> list:
    """Hooks for resid_mid: the ln_2 input; when it changes, the block output becomes new_mid + addend."""
    if not apply.changes(site):
        return [site.module.register_forward_pre_hook(_input_hook(site, apply))]
    block = info.blocks[site.layer]
    state: dict[str, torch.Tensor] = {}

    def pre_hook(module, args):
        state["mid"] = apply(site, args[0])
        return (state["mid"], *args[1:])

    def addend_hook(module, args, output):
        state["addend"] = output

    def block_hook(module, args, output):
        return state.pop("mid") + state.pop("addend")

    return [
        site.module.register_forward_pre_hook(pre_hook),
        _submodule(block, _MLP_ADDEND[info.kind]).register_forward_hook(addend_hook),
        block.register_forward_hook(block_hook, prepend=True),
    ]


@contextmanager
def hooked(
    model: nn.Module,
    *,
    capture: Sequence[str] = (),
    replace: Mapping[str, torch.Tensor] | None = None,
    edit: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> Iterator[ActivationCache]:
    """Capture, replace and edit hook sites during forward passes (methods.md Sec. 6).

    Hooks are registered on entry and always removed in ``finally``, also when the body raises. At
    each site the model's activation is first replaced (``replace``), then edited (``edit``), then
    stored (``capture``); the model continues with the result.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    capture : sequence of str
        Sites whose activations are stored, detached, in the yielded cache.
    replace : mapping of str to torch.Tensor, optional
        Site -> tensor of exactly the activation's shape (cast to its dtype and device), used instead.
    edit : mapping of str to callable, optional
        Site -> ``fn(act) -> act`` of the same shape.

    Yields
    ------
    ActivationCache
        ``cache[name]`` after a forward pass; ``cache.reset()`` between batches.

    Raises
    ------
    TypeError
        If ``capture`` is a single string, an edit is not callable, or a replacement is not a tensor.
    ValueError
        On entry for an unknown site (see :func:`resolve`); during the forward if a replacement or an
        edit's result has the wrong shape (the message names the site and both shapes).
    RuntimeError
        During the forward if a site's tensor is not batch-first with the tower's token count.
    """
    if isinstance(capture, str):
        raise TypeError(f"capture takes a sequence of site names, got the string {capture!r}; use [{capture!r}]")
    replace, edit = dict(replace or {}), dict(edit or {})
    for name, value in replace.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"replacement for site {name!r} must be a torch.Tensor, got {type(value).__name__}")
    for name, fn in edit.items():
        if not callable(fn):
            raise TypeError(f"edit for site {name!r} must be callable (act -> act), got {type(fn).__name__}")
    names = list(dict.fromkeys([*capture, *replace, *edit]))
    sites = {name: resolve(model, name) for name in names}
    towers = {site.tower: tower(model, site.tower) for site in sites.values()}
    apply = _Interventions(capture, replace, edit, towers)

    heads: dict[tuple[str, int], dict[str, Site]] = {}
    pool: dict[str, Site] = {}
    handles = []
    try:
        for site in sites.values():
            info = towers[site.tower]
            if site.hook in HEAD_HOOKS:
                heads.setdefault((site.tower, site.layer), {})[site.hook] = site
            elif site.layer is None:
                pool[site.hook] = site
            elif site.hook == "hook_resid_mid":
                handles += _register_resid_mid(site, info, apply)
            elif site.position == "input":
                handles.append(site.module.register_forward_pre_hook(_input_hook(site, apply)))
            else:
                handles.append(site.module.register_forward_hook(_output_hook(site, apply)))
        for (tower_name, layer), layer_sites in heads.items():
            info = towers[tower_name]
            z_site, result_site = layer_sites.get("attn.hook_z"), layer_sites.get("attn.hook_result")
            module = (z_site or result_site).module
            if info.kind == "timm":
                hook = _timm_proj_hook(z_site, result_site, apply, info.blocks[layer].attn.num_heads)
                handles.append(module.register_forward_hook(hook))
            else:
                handles.append(module.register_forward_hook(_mha_hook(z_site, result_site, apply), with_kwargs=True))
        if pool:
            handles.append(next(iter(pool.values())).module.register_forward_hook(_attnpool_hook(pool, apply)))
        yield apply.cache
    finally:
        for handle in handles:
            handle.remove()
