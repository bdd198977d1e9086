"""open_clip's catalogue read from its installed files, without importing it (standard library only).

:mod:`clipmech.config` checks the configured architectures, pretrained tags and MiCLIP sites at parse
time. Importing open_clip imports torch (about 3 s more per parse); reading its files takes about
0.03 s. :func:`architectures` is ``open_clip.list_models()`` once :mod:`clipmech.models.loading` has
added clipmech's configs, and :func:`pretrained_tags` ``open_clip.list_pretrained()`` by architecture
(tests/unit/test_config.py compares both with open_clip's own lists).
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

#: clipmech's own open_clip model configs (clipmech-vit-tiny, clipmech-vit-tiny4, clipmech-rn-tiny).
CLIPMECH_MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
#: Architecture prefixes that carry their own config and weights (checked when the model loads).
OPEN_CLIP_SCHEMES = ("hf-hub:", "local-dir:")


def open_clip_dir() -> Path:
    """The directory of the installed open_clip package.

    Raises
    ------
    ValueError
        If open_clip is not installed.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ValueError("open_clip is not installed: see environment.yml")
    return Path(spec.origin).parent


def architectures() -> list[str]:
    """open_clip.list_models() once clipmech.models.loading has added its configs: the config files, sorted."""
    dirs = [open_clip_dir() / "model_configs", CLIPMECH_MODEL_CONFIGS]
    return sorted(path.stem for d in dirs for path in d.glob("*.json"))


def _pretrained_tags(node: ast.AST, named: dict[str, dict[str, bool]]) -> dict[str, bool] | None:
    """{tag: quick_gelu} of a `dict(tag=_pcfg(...), ...)` or `{...}` node or a name bound to one."""
    if isinstance(node, ast.Name):
        return named.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        items = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
    elif isinstance(node, ast.Dict):
        items = [(key.value, value) for key, value in zip(node.keys, node.values) if isinstance(key, ast.Constant)]
    else:
        return None
    return {
        tag: isinstance(value, ast.Call)
        and any(kw.arg == "quick_gelu" and getattr(kw.value, "value", None) is True for kw in value.keywords)
        for tag, value in items
    }


def pretrained_tags() -> dict[str, list[str]]:
    """{architecture: sorted tags} as open_clip.list_pretrained() gives them, from open_clip/pretrained.py's
    `_PRETRAINED` table (its `-quickgelu` twins included)."""
    tree = ast.parse((open_clip_dir() / "pretrained.py").read_text())
    named, table = {}, {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            continue
        if stmt.targets[0].id == "_PRETRAINED" and isinstance(stmt.value, ast.Dict):
            for key, value in zip(stmt.value.keys, stmt.value.values):
                tags = _pretrained_tags(value, named)
                if isinstance(key, ast.Constant) and tags is not None:
                    table[key.value] = tags
        else:
            tags = _pretrained_tags(stmt.value, named)
            if tags is not None:
                named[stmt.targets[0].id] = tags
    quick = {f"{model}-quickgelu": [tag for tag, q in tags.items() if q] for model, tags in table.items()}
    tags = {model: sorted(tags) for model, tags in table.items()}
    tags.update({model: sorted(t) for model, t in quick.items() if t})
    return tags


def model_config(architecture: str, image_size: int | None = None, context_length: int | None = None) -> dict | None:
    """open_clip's model config of an architecture (its JSON file; clipmech's own first), or None for a
    hub / local-dir architecture or one without a config file (checked when the model loads).

    ``image_size`` and ``context_length`` (a config's ``models.<name>`` overrides) replace ``vision_cfg.image_size``
    and ``text_cfg.context_length`` as open_clip's ``force_image_size`` and ``force_context_length`` do."""
    if architecture.startswith(OPEN_CLIP_SCHEMES):
        return None
    for directory in (CLIPMECH_MODEL_CONFIGS, open_clip_dir() / "model_configs"):
        path = directory / f"{architecture}.json"
        if path.is_file():
            config = json.loads(path.read_text())
            if image_size is not None:
                config["vision_cfg"]["image_size"] = image_size
            if context_length is not None:
                config.setdefault("text_cfg", {})["context_length"] = context_length
            return config
    return None


def is_resnet(architecture: str) -> bool | None:
    """Whether the vision tower is a ModifiedResNet (its config's ``vision_cfg.layers`` is a list of
    stage depths), or None when the config is not known at parse time."""
    config = model_config(architecture)
    if config is None:
        return None
    return isinstance(config["vision_cfg"].get("layers"), list)


def vision_layers(architecture: str) -> tuple[bool, int] | None:
    """(is_resnet, number of vision blocks) of an architecture from its open_clip config file, or None
    for a hub / local-dir architecture, one without a config file, or a timm tower (its depth is timm's)."""
    config = model_config(architecture)
    if config is None or "timm_model_name" in config["vision_cfg"]:
        return None
    layers = config["vision_cfg"].get("layers", VISION_DEFAULTS["layers"])
    if isinstance(layers, list):
        return True, len(layers)
    return False, int(layers)


#: open_clip's CLIPVisionCfg / CLIPTextCfg defaults of the keys read here (a config file may omit them).
VISION_DEFAULTS = {"layers": 12, "width": 768, "mlp_ratio": 4.0, "patch_size": 16, "image_size": 224}
TEXT_DEFAULTS = {"layers": 12, "width": 512, "mlp_ratio": 4.0, "context_length": 77}


def _tower_cfg(
    architecture: str, tower: str, image_size: int | None = None, context_length: int | None = None
) -> dict | None:
    """The vision_cfg / text_cfg of an open_clip-built transformer or ModifiedResNet tower with the
    defaults filled and the size overrides applied (:func:`model_config`), or None when it is unknown at
    parse time (no config file, a timm vision tower, a Hugging Face text tower)."""
    config = model_config(architecture, image_size, context_length)
    if config is None or tower not in ("visual", "text"):
        return None
    cfg = config.get("vision_cfg" if tower == "visual" else "text_cfg", {})
    if "timm_model_name" in cfg or "hf_model_name" in cfg:
        return None
    return {**(VISION_DEFAULTS if tower == "visual" else TEXT_DEFAULTS), **cfg}


def tower_layers(architecture: str, tower: str) -> int | None:
    """Blocks of a tower (`visual`: transformer blocks or ResNet stages; `text`), or None when unknown."""
    cfg = _tower_cfg(architecture, tower)
    if cfg is None:
        return None
    return len(cfg["layers"]) if isinstance(cfg["layers"], list) else int(cfg["layers"])


def site_width(architecture: str, tower: str, layer: int, hook: str) -> int | None:
    """Channels of the last axis of a block site (clipmech.hooks.names) of a transformer tower, or of a
    ModifiedResNet stage's ``hook_resid_post`` (``width`` x 2^stage x 4, the bottleneck's expansion);
    None when unknown at parse time (see :func:`_tower_cfg`) or for a per-head hook."""
    cfg = _tower_cfg(architecture, tower)
    if cfg is None:
        return None
    if isinstance(cfg["layers"], list):
        return int(cfg["width"]) * 2**layer * 4 if hook == "hook_resid_post" else None
    if hook == "mlp.hook_post":
        return int(int(cfg["width"]) * float(cfg["mlp_ratio"]))
    if hook in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
        return int(cfg["width"])
    return None


def site_positions(
    architecture: str, tower: str, layer: int, image_size: int | None = None, context_length: int | None = None
) -> int | None:
    """Positions per input of a block site: every token of a transformer tower (:func:`tokens_per_input`), or
    the h x w of a ModifiedResNet stage's feature map, image_size / (4 x 2^stage) on a side (the stem's stride 4,
    then 2 per later stage); None when unknown at parse time. The sizes override the architecture's
    (:func:`model_config`)."""
    cfg = _tower_cfg(architecture, tower, image_size, context_length)
    if cfg is None:
        return None
    if isinstance(cfg["layers"], list):
        size = cfg["image_size"]
        size = size if isinstance(size, int) else size[0]
        return (int(size) // (4 * 2**layer)) ** 2
    prefix, others = tokens_per_input(architecture, tower, image_size, context_length)
    return prefix + others


def tokens_per_input(
    architecture: str, tower: str, image_size: int | None = None, context_length: int | None = None
) -> tuple[int, int] | None:
    """(prefix tokens, other tokens) of one input of a transformer tower: an open_clip ViT has its class
    token and (image_size / patch_size)^2 patches, a text tower ``context_length`` tokens and no prefix;
    None when unknown at parse time or for a ModifiedResNet. The sizes override the architecture's
    (:func:`model_config`)."""
    cfg = _tower_cfg(architecture, tower, image_size, context_length)
    if cfg is None or isinstance(cfg["layers"], list):
        return None
    if tower == "text":
        return 0, int(cfg["context_length"])
    image, patch = cfg["image_size"], cfg["patch_size"]
    image = (image, image) if isinstance(image, int) else tuple(image)
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return 1, (image[0] // patch[0]) * (image[1] // patch[1])
