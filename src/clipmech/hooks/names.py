"""Hook-site names of both towers, parsed without torch (methods.md Sec. 6).

The vocabulary of :mod:`clipmech.hooks.sites` as strings only: the hooks of a transformer block, of a
ModifiedResNet stage and of its attention pool, and the two name forms ``<tower>.blocks.<l>.<hook>``
and ``<tower>.attnpool.<hook>``. Standard library only: :mod:`clipmech.config` checks the configured
sites at parse time with it, before any model is loaded.
"""

from __future__ import annotations

import re

#: Hooks of every block of a transformer tower, in the order they run.
TRANSFORMER_HOOKS = (
    "hook_resid_pre",
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
#: The per-head hooks of a transformer block, (N, T, H, d_head) and (N, T, H, D).
HEAD_HOOKS = ("attn.hook_z", "attn.hook_result")
#: Hooks of a transformer block whose tensor has one channel axis last, (N, T, D) or (N, T, D_mlp).
CHANNEL_HOOKS = tuple(hook for hook in TRANSFORMER_HOOKS if hook not in HEAD_HOOKS)
#: Hooks of every stage of a ModifiedResNet.
RESNET_HOOKS = ("hook_resid_post",)
#: Hooks of a ModifiedResNet's attention pool, in the order they are computed.
ATTNPOOL_HOOKS = ("hook_x", "hook_alpha", "hook_result", "hook_out")

#: ``<tower>.blocks.<l>.<hook>``: groups tower, layer as written (may be negative), hook.
BLOCK_PATTERN = re.compile(r"(\w+)\.blocks\.(-?\d+)\.(.+)")
#: ``<tower>.attnpool.<hook>``: groups tower, hook.
ATTNPOOL_PATTERN = re.compile(r"(\w+)\.attnpool\.(.+)")


def block_site(name: str) -> tuple[str, int, str]:
    """(tower, layer, hook) of a block site name such as ``visual.blocks.3.hook_mlp_out``.

    The layer is the integer as written (negative layers count from the end of the tower); neither
    the tower nor the hook is checked against a model here (:func:`clipmech.hooks.sites.resolve` does).

    Raises
    ------
    ValueError
        If the name is not of the form ``<tower>.blocks.<l>.<hook>``.
    """
    match = BLOCK_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"site {name!r} is not of the form '<tower>.blocks.<l>.<hook>'")
    return match.group(1), int(match.group(2)), match.group(3)
