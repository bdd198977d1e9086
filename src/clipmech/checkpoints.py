"""Telling a local checkpoint path from an open_clip pretrained tag (standard library only: the
Snakefile uses it at parse time)."""

from __future__ import annotations

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


def is_local_checkpoint(pretrained: str | None) -> bool:
    """True when ``pretrained`` names a file (has a directory part or a checkpoint suffix) rather
    than an open_clip tag such as ``openai``; False for None (random weights)."""
    return pretrained is not None and ("/" in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES))
