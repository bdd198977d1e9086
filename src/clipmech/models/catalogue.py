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


def vision_layers(architecture: str) -> tuple[bool, int] | None:
    """(is_resnet, number of vision blocks) of an architecture from its open_clip config file, or None
    for a hub / local-dir architecture or one without a config file (checked when the model loads)."""
    if architecture.startswith(OPEN_CLIP_SCHEMES):
        return None
    for directory in (CLIPMECH_MODEL_CONFIGS, open_clip_dir() / "model_configs"):
        path = directory / f"{architecture}.json"
        if path.is_file():
            layers = json.loads(path.read_text())["vision_cfg"]["layers"]
            if isinstance(layers, list):
                return True, len(layers)
            return False, int(layers)
    return None
