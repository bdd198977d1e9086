"""The compute precision of the model forwards: ``extraction.precision`` as a torch autocast context.

``fp32`` runs the model as loaded (float32 weights, no autocast): the default, and the numbers of
methods.md. ``bf16`` and ``fp16`` run the forwards under :func:`torch.autocast`: matrix products and
convolutions in that dtype, reductions, norms and softmax in float32 as autocast chooses. The weights
stay float32, and what a stage stores keeps its dtype (a store's float16 tokens stay float16, its
reductions float32): precision is about compute, not storage. CUDA runs both; a CPU runs ``bf16``
(torch's CPU autocast) and refuses ``fp16``, which torch's CPU kernels run slowly, if at all, and with
no speed to gain; the config refuses ``fp16`` with ``extraction.device: cpu`` at parse time
(:mod:`clipmech.config`), :func:`autocast` when ``auto`` finds no CUDA device.
"""

from __future__ import annotations

import contextlib

import torch

#: The values of extraction.precision (the config schema's enum; clipmech.config, standard library only,
#: does not import this module, which keeps the config out of the code hash of the rules that run models).
PRECISIONS = ("fp32", "bf16", "fp16")
#: The autocast dtype of each reduced precision.
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context the model forwards of ``precision`` run in on ``device`` (module docstring).

    Parameters
    ----------
    device : str or torch.device
        The resolved device the model is on (``cpu``, ``cuda``, ``cuda:1``...).
    precision : {"fp32", "bf16", "fp16"}
        ``extraction.precision``.

    Returns
    -------
    context manager
        ``contextlib.nullcontext()`` for fp32, else ``torch.autocast(device.type, dtype)``.

    Raises
    ------
    ValueError
        For a precision not in :data:`PRECISIONS` (the message lists them), or fp16 on a
        device that is not CUDA (the message names ``extraction.precision`` and what a CPU runs).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"extraction.precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"extraction.precision = 'fp16' needs a CUDA device; the model runs on {device} (extraction.device "
            "auto found no CUDA device, or names none): on a CPU use bf16 or fp32"
        )
    return torch.autocast(device.type, dtype=DTYPES[precision])
