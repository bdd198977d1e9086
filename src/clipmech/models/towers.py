"""The tower adapter: the facts about one tower of an open_clip model (methods.md Sec. 6).

Every analysis that walks a tower's blocks, reshapes its tokens to the patch grid or splits its
attention into heads reads them from one :class:`Tower`, built by :func:`tower`, instead of poking
at open_clip's (or timm's) attributes itself. Supported kinds:

* ``vit``: open_clip's ``VisionTransformer`` (``model.visual``); blocks are
  ``visual.transformer.resblocks``; tokens (N, T, D), T = 1 class token + rows * cols patches.
* ``timm``: a timm ``VisionTransformer`` trunk (``model.visual.trunk``, as in SigLIP); blocks are
  ``visual.trunk.blocks``; T = ``trunk.num_prefix_tokens`` + rows * cols (SigLIP: 0 prefix tokens).
* ``resnet``: open_clip's ``ModifiedResNet``; blocks are the four stages ``layer1`` .. ``layer4``;
  the final feature map (N, C, h, w) feeds ``visual.attnpool`` (methods.md Sec. 5), whose token
  sequence is 1 mean token + h * w spatial tokens.
* ``text``: open_clip's text transformer, flattened into ``CLIP`` (``model.transformer``) or a
  ``TextTransformer`` at ``model.text`` (``CustomTextCLIP``); tokens (N, L, D), L <= context length.

This module imports only torch, open_clip and timm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import TextTransformer, Transformer, VisionTransformer
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import nn

TOWER_NAMES = ("visual", "text")
KINDS = ("vit", "timm", "resnet", "text")
#: Total stride of open_clip's ModifiedResNet: stem conv (2) and avgpool (2), layer2..layer4 (2 each).
RESNET_STRIDE = 32


@dataclass(frozen=True)
class Tower:
    """One tower of an open_clip model, described independently of its implementation.

    Attributes
    ----------
    name : {"visual", "text"}
        The attribute path prefix of the tower; also the prefix of its hook-site names.
    kind : {"vit", "timm", "resnet", "text"}
        See the module docstring.
    blocks : tuple of torch.nn.Module
        The residual blocks in depth order (ResNet: the stages ``layer1`` .. ``layer4``).
    n_layers : int
        ``len(blocks)``.
    width : int
        D, the residual width (ResNet: C, the channels of the final feature map).
    d_mlp : int or None
        The hidden width of every block's MLP (``mlp.hook_post``: open_clip's ``c_fc``, timm's ``fc1``
        output features); None for ``resnet``.
    n_heads : int
        Attention heads per block (ResNet: heads of the attention pool).
    grid : tuple of int or None
        (rows, cols) of the patch grid (ResNet: of the final feature map); None for text.
    n_prefix_tokens : int
        Tokens before the patch tokens: 1 (class token) for ``vit``, ``trunk.num_prefix_tokens``
        for ``timm``, 1 (the mean token of the attention pool) for ``resnet``, 0 for ``text``.
    n_tokens : int
        Length of the token sequence: n_prefix_tokens + rows * cols for images (ResNet: of the
        attention pool), the context length (positions of the positional embedding) for text.
    stride : tuple of int or None
        Pixels per patch / per feature-map cell (rows, cols); None for text.
    has_attnpool : bool
        True for a ``resnet`` tower (``visual.attnpool`` is an open_clip ``AttentionPool2d``).
    image_size : tuple of int or None
        Input image (height, width) in pixels; None for text. ``image_size == grid * stride``.
    """

    name: str
    kind: str
    blocks: tuple = field(repr=False)
    n_layers: int
    width: int
    d_mlp: int | None
    n_heads: int
    grid: tuple[int, int] | None
    n_prefix_tokens: int
    n_tokens: int
    stride: tuple[int, int] | None
    has_attnpool: bool
    image_size: tuple[int, int] | None

    @property
    def d_head(self) -> int:
        """Width of one attention head, D / H (ResNet: C / H of the attention pool)."""
        return self.width // self.n_heads


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    rows, cols = value
    return (int(rows), int(cols))


def _mlp_width(block: nn.Module) -> int:
    """The hidden width of a block's MLP: open_clip's ``mlp.c_fc`` or timm's ``mlp.fc1`` output features."""
    mlp = block.mlp
    return int((mlp.c_fc if hasattr(mlp, "c_fc") else mlp.fc1).out_features)


def _transformer_tower(name: str, kind: str, transformer: Transformer, **facts) -> Tower:
    blocks = tuple(transformer.resblocks)
    return Tower(
        name=name,
        kind=kind,
        blocks=blocks,
        n_layers=len(blocks),
        width=int(transformer.width),
        d_mlp=_mlp_width(blocks[0]),
        n_heads=int(blocks[0].attn.num_heads),
        **facts,
    )


def _visual_tower(visual: nn.Module) -> Tower:
    if isinstance(visual, VisionTransformer):
        grid = _pair(visual.grid_size)
        return _transformer_tower(
            "visual",
            "vit",
            visual.transformer,
            grid=grid,
            n_prefix_tokens=1,
            n_tokens=1 + grid[0] * grid[1],
            stride=_pair(visual.patch_size),
            has_attnpool=False,
            image_size=_pair(visual.image_size),
        )
    trunk = getattr(visual, "trunk", None)
    if isinstance(trunk, TimmVisionTransformer):
        blocks = tuple(trunk.blocks)
        grid = _pair(trunk.patch_embed.grid_size)
        n_prefix = int(trunk.num_prefix_tokens)
        return Tower(
            name="visual",
            kind="timm",
            blocks=blocks,
            n_layers=len(blocks),
            width=int(trunk.embed_dim),
            d_mlp=_mlp_width(blocks[0]),
            n_heads=int(blocks[0].attn.num_heads),
            grid=grid,
            n_prefix_tokens=n_prefix,
            n_tokens=n_prefix + grid[0] * grid[1],
            stride=_pair(trunk.patch_embed.patch_size),
            has_attnpool=False,
            image_size=_pair(trunk.patch_embed.img_size),
        )
    if isinstance(visual, ModifiedResNet):
        blocks = (visual.layer1, visual.layer2, visual.layer3, visual.layer4)
        n_tokens, width = visual.attnpool.positional_embedding.shape
        image_size = _pair(visual.image_size)
        grid = (image_size[0] // RESNET_STRIDE, image_size[1] // RESNET_STRIDE)
        if 1 + grid[0] * grid[1] != n_tokens:
            raise ValueError(
                f"ModifiedResNet: image_size {image_size} gives a {grid} feature map, but the attention "
                f"pool's positional embedding has {n_tokens} tokens (expected 1 + rows * cols)"
            )
        return Tower(
            name="visual",
            kind="resnet",
            blocks=blocks,
            n_layers=4,
            width=int(width),
            d_mlp=None,
            n_heads=int(visual.attnpool.num_heads),
            grid=grid,
            n_prefix_tokens=1,
            n_tokens=int(n_tokens),
            stride=(RESNET_STRIDE, RESNET_STRIDE),
            has_attnpool=True,
            image_size=image_size,
        )
    trunk_type = type(trunk).__name__ if trunk is not None else None
    raise TypeError(
        f"unsupported vision tower {type(visual).__name__} (trunk: {trunk_type}); "
        "supported kinds: 'vit' (open_clip VisionTransformer), 'timm' (timm VisionTransformer at visual.trunk), "
        "'resnet' (open_clip ModifiedResNet)"
    )


def _text_tower(model: nn.Module) -> Tower:
    text = getattr(model, "text", None)
    if isinstance(text, TextTransformer):
        transformer, n_tokens = text.transformer, text.positional_embedding.shape[0]
    elif text is None and isinstance(getattr(model, "transformer", None), Transformer):
        transformer, n_tokens = model.transformer, model.positional_embedding.shape[0]
    else:
        found = type(text).__name__ if text is not None else type(getattr(model, "transformer", None)).__name__
        raise TypeError(
            f"unsupported text tower {found} on {type(model).__name__}; supported kind: 'text' (open_clip's "
            "TextTransformer at model.text, or its Transformer at model.transformer in open_clip.CLIP)"
        )
    return _transformer_tower(
        "text",
        "text",
        transformer,
        grid=None,
        n_prefix_tokens=0,
        n_tokens=int(n_tokens),
        stride=None,
        has_attnpool=False,
        image_size=None,
    )


def text_pool(model: nn.Module) -> tuple[str, int | None]:
    """How the text tower turns its tokens into the text embedding: ``(pool_type, eos_id)`` as open_clip's
    ``text_global_pool`` takes them (``argmax``: CLIP's end-of-text token, the largest id; ``last``:
    SigLIP; ``first``; ``eos``: the first ``eos_id``; ``none``), from ``model.text_pool_type`` /
    ``model.text_eos_id`` (open_clip.CLIP) or ``model.text.pool_type`` / ``.eos_id`` (CustomTextCLIP)."""
    text = getattr(model, "text", None)
    if text is not None:
        return text.pool_type, getattr(text, "eos_id", None)
    return model.text_pool_type, getattr(model, "text_eos_id", None)


def tower(model: nn.Module, name: str = "visual") -> Tower:
    """Describe one tower of an open_clip model (methods.md Sec. 6).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
        Any model with ``model.visual`` and a text tower (``model.transformer`` or ``model.text``).
    name : {"visual", "text"}

    Returns
    -------
    Tower

    Raises
    ------
    ValueError
        If ``name`` is not a tower name, or a ResNet's image size does not fit its attention pool.
    TypeError
        If the tower is of an unsupported type; the message names the type and the supported kinds.
    """
    if name == "visual":
        return _visual_tower(model.visual)
    if name == "text":
        return _text_tower(model)
    raise ValueError(f"unknown tower {name!r}; towers are: {', '.join(TOWER_NAMES)}")
