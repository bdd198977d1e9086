"""Components: the slices of hook-site activations that a patched run restores (methods.md Sec. 8).

A :class:`Component` names a site (:mod:`clipmech.hooks.sites`) and an index into its activation
after the batch axis: an integer selects one position of an axis, ``None`` keeps the whole axis, and
trailing axes are kept whole. The families, with the site and the index they use:

===============  ==============================================  =====================  ===========
family           site                                            index                  towers
===============  ==============================================  =====================  ===========
``resid_pre``    ``{tower}.blocks.{l}.hook_resid_pre`` (N,T,D)   ``(t,)``: token t      transformer
``attn_out``     ``{tower}.blocks.{l}.hook_attn_out`` (N,T,D)    ``(t,)``               transformer
``mlp_out``      ``{tower}.blocks.{l}.hook_mlp_out`` (N,T,D)     ``(t,)``               transformer
``mlp``          ``{tower}.blocks.{l}.hook_mlp_out`` (N,T,D)     ``()``: every token    transformer
``head``         ``{tower}.blocks.{l}.attn.hook_result``         ``(None, h)``: head h  transformer
                 (N,T,H,D)                                       at every token
``neuron``       ``{tower}.blocks.{l}.mlp.hook_post`` (N,T,D_mlp)  ``(None, j)``: neuron  transformer
                                                                 j at every token
``stage``        ``visual.blocks.{l}.hook_resid_post`` (N,C,h,w)  ``()``: the whole map  resnet
``pool_token``   ``visual.attnpool.hook_x`` (N,T,C)              ``(t,)``               resnet
``pool_head``    ``visual.attnpool.hook_result`` (N,H,E)         ``(h,)``               resnet
``pool_neuron``  ``visual.attnpool.hook_x`` (N,T,C)              ``(None, c)``: channel  resnet
                                                                 c at every token
===============  ==============================================  =====================  ===========

``resid_pre`` of layer 0 at token t is the embedding of token t; restoring the whole residual stream
of a layer is :func:`layer_component`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Snakefile imports this module (through clipmech.resources): no torch at parse time
    from clipmech.models.towers import Tower

#: Families of transformer towers (vit, timm, text), with their hook.
TRANSFORMER_FAMILIES = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "mlp": "hook_mlp_out",
    "head": "attn.hook_result",
    "neuron": "mlp.hook_post",
}
#: Families of a CLIP-ResNet vision tower, with their site (``stage``: per layer).
RESNET_FAMILIES = {
    "stage": "hook_resid_post",
    "pool_token": "visual.attnpool.hook_x",
    "pool_head": "visual.attnpool.hook_result",
    "pool_neuron": "visual.attnpool.hook_x",
}
FAMILIES = (*TRANSFORMER_FAMILIES, *RESNET_FAMILIES)
#: Families whose components are token positions of a layer: the recovery maps (layer x position).
POSITION_FAMILIES = ("resid_pre", "attn_out", "mlp_out", "pool_token")
#: Families whose components sit after the last ResNet stage: a run from the stage's output suffices.
POOL_FAMILIES = ("pool_token", "pool_head", "pool_neuron")


@dataclass(frozen=True)
class Component:
    """One slice of one site's activation.

    Attributes
    ----------
    family : str
        One of ``FAMILIES``.
    site : str
        Canonical site name.
    index : tuple of (int or None)
        Per axis after the batch axis: an int selects that position, None keeps the axis; axes after
        the tuple are kept whole.
    layer, position, head, unit : int or None
        The labels of the component in tables (block, token, head, neuron or channel); None where the
        family has no such axis (``layer`` is None for the attention pool).
    """

    family: str
    site: str
    index: tuple
    layer: int | None = None
    position: int | None = None
    head: int | None = None
    unit: int | None = None


def _check_families(info: Tower, families: Sequence[str]) -> None:
    valid = tuple(RESNET_FAMILIES) if info.kind == "resnet" else tuple(TRANSFORMER_FAMILIES)
    unknown = [f for f in families if f not in valid]
    if unknown:
        raise ValueError(
            f"unknown component families {unknown} for the {info.kind} {info.name} tower; valid: {', '.join(valid)}"
        )


def components(
    info: Tower,
    families: Sequence[str],
    n_positions: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
):
    """All components of the given families of one tower, in family order, then layer, then index.

    Parameters
    ----------
    info : clipmech.models.towers.Tower
    families : sequence of str
        From ``TRANSFORMER_FAMILIES`` (vit, timm, text towers) or ``RESNET_FAMILIES`` (resnet).
    n_positions : int, optional
        Token positions 0..n_positions-1 of the position families (default: all ``info.n_tokens``;
        for text, the longest caption up to its end-of-text token). ``neuron`` has ``info.d_mlp`` units
        per block.
    layers : sequence of int, optional
        Only these blocks (ResNet: stages) of the families with a layer; those beyond the tower's depth are
        left out (the config's ``patching.layers``, to size a sweep). Default: every block.
    positions : sequence of int, optional
        Only these token positions of the position families (those from ``n_positions`` on are left out;
        ``patching.positions``). Default: every position.

    Returns
    -------
    list of Component

    Raises
    ------
    ValueError
        For a family the tower does not have (the message lists the valid ones).
    """
    _check_families(info, families)
    n_positions = info.n_tokens if n_positions is None else n_positions
    blocks = [layer for layer in range(info.n_layers) if layers is None or layer in layers]
    tokens = [t for t in range(n_positions) if positions is None or t in positions]
    found = []
    for family in families:
        if family == "stage":
            found += [Component(family, f"visual.blocks.{layer}.hook_resid_post", (), layer=layer) for layer in blocks]
        elif family == "pool_token":
            found += [
                Component(family, RESNET_FAMILIES[family], (t,), position=t)
                for t in range(info.n_tokens)
                if positions is None or t in positions
            ]
        elif family == "pool_head":
            found += [Component(family, RESNET_FAMILIES[family], (h,), head=h) for h in range(info.n_heads)]
        elif family == "pool_neuron":
            found += [Component(family, RESNET_FAMILIES[family], (None, c), unit=c) for c in range(info.width)]
        else:
            hook = TRANSFORMER_FAMILIES[family]
            for layer in blocks:
                site = f"{info.name}.blocks.{layer}.{hook}"
                if family == "head":
                    found += [Component(family, site, (None, h), layer=layer, head=h) for h in range(info.n_heads)]
                elif family == "neuron":
                    found += [Component(family, site, (None, j), layer=layer, unit=j) for j in range(info.d_mlp)]
                elif family == "mlp":
                    found.append(Component(family, site, (), layer=layer))
                else:
                    found += [Component(family, site, (t,), layer=layer, position=t) for t in tokens]
    return found


def layer_component(info: Tower, layer: int) -> Component:
    """The whole residual stream entering block ``layer`` (ResNet: the output of stage ``layer``).

    Restoring it from the clean run makes everything downstream clean, so R = 1 (methods.md Sec. 8).
    """
    if info.kind == "resnet":
        return Component("stage", f"visual.blocks.{layer}.hook_resid_post", (), layer=layer)
    return Component("resid_pre", f"{info.name}.blocks.{layer}.hook_resid_pre", (), layer=layer)


def path_components(
    info: Tower,
    n_positions: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
) -> list[Component]:
    """The components whose restoration together restores the whole output (circuit sparsity).

    Transformer towers: the embeddings (``resid_pre`` of layer 0 per token) and every attention and
    MLP output per layer and token, whose sum is the final residual stream. ResNet: the
    attention-pool heads, whose sum plus the output bias is the image embedding. ``layers`` and
    ``positions`` restrict them as in :func:`components` (the embeddings are kept at the positions); the
    restricted set no longer restores the whole output.
    """
    if info.kind == "resnet":
        return components(info, ["pool_head"])
    embeddings = components(info, ["resid_pre"], n_positions, layers=[0], positions=positions)
    return embeddings + components(info, ["attn_out", "mlp_out"], n_positions, layers=layers, positions=positions)


#: How :func:`unit_components` counts a transformer's MLPs: whole layers (``mlp``) or hidden neurons (``neuron``).
MLP_UNITS = {"layer": "mlp", "neuron": "neuron"}


def unit_components(info: Tower, mlp: str = "layer", *, layers: Sequence[int] | None = None) -> list[Component]:
    """The components circuit sparsity counts as the causal-tracing paper does: heads and MLPs, every token.

    Transformer towers: every attention head (``head``) and every MLP, as a whole layer (``mlp``) or
    per hidden neuron (``neuron``), each at every token. ResNet: the attention-pool heads. Unlike
    :func:`path_components` they do not include the embeddings, so restoring all of them need not
    restore the output (the corrupted embeddings still reach it through the residual stream).

    Parameters
    ----------
    info : clipmech.models.towers.Tower
    mlp : {"layer", "neuron"}
        Transformer towers: the MLP units (:data:`MLP_UNITS`).
    layers : sequence of int, optional
        Only the heads and MLPs of these blocks (:func:`components`); default every block.

    Raises
    ------
    ValueError
        For another ``mlp``.
    """
    if mlp not in MLP_UNITS:
        raise ValueError(f"unknown MLP unit {mlp!r}; valid: {', '.join(MLP_UNITS)}")
    if info.kind == "resnet":
        return components(info, ["pool_head"])
    return components(info, ["head", MLP_UNITS[mlp]], layers=layers)
