"""Row expansion: the hook that turns each row of a batch into the rows of its copies, registered where the
copies of an input start to differ, so that the layers before it run once per input (methods.md Sec. 6).

Used by the patching engine (:mod:`clipmech.patching.engine`: each block gathers in the patched copies whose
first patched block it is) and by the MiCLIP interventions (:mod:`clipmech.miclip.interventions`: each image
repeated once per intervention). The hook runs before every other hook of its module (``prepend``), so the
site hooks of :func:`clipmech.hooks.sites.hooked` on the same module see the expanded rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def expand_rows(
    module: nn.Module, expand: Callable[[torch.Tensor], torch.Tensor], *, output: bool = False
) -> RemovableHandle:
    """Register, first among the module's hooks, a hook that replaces the module's first input (a forward
    pre-hook) or, with ``output``, its output (a forward hook) by ``expand`` of it: (B, ...) -> (B', ...).

    Returns
    -------
    torch.utils.hooks.RemovableHandle
        Remove it to restore the module.
    """
    if output:
        return module.register_forward_hook(lambda _, args, out: expand(out), prepend=True)
    return module.register_forward_pre_hook(lambda _, args: (expand(args[0]), *args[1:]), prepend=True)


def gather_rows(index_B: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x[index_B]``: row b of the result is row ``index_B[b]`` of the input (index moved to its device)."""
    return lambda x: x[index_B.to(x.device)]


def repeat_rows(n_copies: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> x.repeat_interleave(n_copies, dim=0)``: row ``i * n_copies + k`` of the result is row i of the input."""
    return lambda x: x.repeat_interleave(n_copies, dim=0)
