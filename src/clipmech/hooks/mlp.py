"""Forward hooks on the MLP outputs of a CLIP vision transformer (methods.md Sec. 2).

The units of the selectivity analysis are the outputs of the second linear layer of every
transformer MLP of the vision tower: in open_clip's own ViT ``visual.transformer.resblocks[l].mlp``
(output of ``c_proj``), in timm-backed towers (SigLIP) ``visual.trunk.blocks[l].mlp``. open_clip 3.x
runs the tower batch-first, so a captured output is (N, T, D) with the prefix (class) tokens first.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VisionBlocks:
    """Where a vision tower's MLPs are and how its token sequence is laid out.

    Attributes
    ----------
    mlps : tuple of torch.nn.Module
        One MLP per block, in depth order.
    n_prefix_tokens : int
        Tokens before the patch tokens (1 = class token in open_clip ViTs; 0 in SigLIP).
    grid : tuple of int
        Patch grid (rows, columns); T = n_prefix_tokens + rows * columns.
    width : int
        D, the residual width (units per layer).
    """

    mlps: tuple
    n_prefix_tokens: int
    grid: tuple[int, int]
    width: int

    @property
    def n_tokens(self) -> int:
        return self.n_prefix_tokens + self.grid[0] * self.grid[1]


def vision_blocks(model) -> VisionBlocks:
    """Locate the MLPs of an open_clip model's vision transformer.

    Raises
    ------
    TypeError
        If the vision tower is not a transformer (e.g. a ModifiedResNet, whose analysis is the
        attention-pool decomposition instead).
    """
    visual = model.visual
    if hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks"):
        blocks = visual.transformer.resblocks
        return VisionBlocks(
            mlps=tuple(block.mlp for block in blocks),
            n_prefix_tokens=1,
            grid=tuple(int(g) for g in visual.grid_size),
            width=int(visual.transformer.width),
        )
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "blocks"):
        return VisionBlocks(
            mlps=tuple(block.mlp for block in trunk.blocks),
            n_prefix_tokens=int(getattr(trunk, "num_prefix_tokens", 0)),
            grid=tuple(int(g) for g in trunk.patch_embed.grid_size),
            width=int(trunk.embed_dim),
        )
    raise TypeError(
        f"vision tower {type(visual).__name__} has no transformer blocks; MLP hooks need an open_clip "
        "VisionTransformer (visual.transformer.resblocks) or a timm ViT (visual.trunk.blocks)"
    )


class MLPCapture:
    """Holds the MLP outputs captured during one forward pass; reset before each batch.

    ``outputs[l]`` is the (N, T, D) output of the l-th hooked layer, in the order the layers were
    given to :func:`capture_mlp_outputs`.
    """

    def __init__(self, layers: list[int], n_tokens: int):
        self.layers = list(layers)
        self.n_tokens = n_tokens
        self.outputs: list[torch.Tensor | None] = [None] * len(layers)

    def reset(self) -> None:
        self.outputs = [None] * len(self.layers)

    def stacked(self) -> torch.Tensor:
        """All captured layers as one tensor (N, L, T, D).

        Raises
        ------
        RuntimeError
            If a hooked layer did not run since the last reset.
        """
        missing = [layer for layer, out in zip(self.layers, self.outputs) if out is None]
        if missing:
            raise RuntimeError(f"no MLP output captured for layers {missing}; did the forward pass run?")
        return torch.stack(self.outputs, dim=1)


@contextmanager
def capture_mlp_outputs(model, layers: list[int] | None = None):
    """Capture the MLP output of the given vision blocks (all by default) during forward passes.

    Hooks are removed when the context exits, also on error.

    Yields
    ------
    MLPCapture
        Its ``outputs`` are filled by every forward pass; call ``reset()`` between batches.

    Raises
    ------
    IndexError
        If a layer index is out of range (the message gives the number of blocks).
    """
    blocks = vision_blocks(model)
    layers = list(range(len(blocks.mlps))) if layers is None else list(layers)
    for layer in layers:
        if not 0 <= layer < len(blocks.mlps):
            raise IndexError(f"layer {layer} out of range: the vision tower has {len(blocks.mlps)} blocks")
    capture = MLPCapture(layers, blocks.n_tokens)

    def make_hook(slot: int):
        def hook(module, inputs, output):
            # [batch, token, d_model]: open_clip 3.x is batch-first.
            if output.ndim != 3 or output.shape[1] != capture.n_tokens:
                raise RuntimeError(
                    f"expected a batch-first MLP output (N, {capture.n_tokens}, D), got {tuple(output.shape)}"
                )
            capture.outputs[slot] = output.detach()

        return hook

    handles = [blocks.mlps[layer].register_forward_hook(make_hook(slot)) for slot, layer in enumerate(layers)]
    try:
        yield capture
    finally:
        for handle in handles:
            handle.remove()


REDUCTIONS = ("mean", "max", "cls")


def reduce_tokens(acts_NLTD: torch.Tensor, reduction: str, n_prefix_tokens: int) -> torch.Tensor:
    """Reduce per-token activations to one value per image and unit (methods.md Sec. 2).

    Parameters
    ----------
    acts_NLTD : torch.Tensor, (N, L, T, D)
    reduction : {"mean", "max", "cls"}
        ``mean`` / ``max`` over the patch tokens, or the class token's activation.
    n_prefix_tokens : int
        Tokens before the patch tokens.

    Returns
    -------
    torch.Tensor, float32, (N, L, D)

    Raises
    ------
    ValueError
        For an unknown reduction, or ``cls`` on a tower without a class token.
    """
    patches = acts_NLTD[:, :, n_prefix_tokens:].float()
    if reduction == "mean":
        return patches.mean(dim=2)
    if reduction == "max":
        return patches.amax(dim=2)
    if reduction == "cls":
        if n_prefix_tokens < 1:
            raise ValueError("reduction 'cls' needs a class token; this tower has none (use 'mean' or 'max')")
        return acts_NLTD[:, :, 0].float()
    raise ValueError(f"unknown reduction {reduction!r}; valid reductions are: {', '.join(REDUCTIONS)}")
