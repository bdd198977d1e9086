"""Which package code a workflow script runs, as a hash: the rerun trigger for package edits.

Snakemake's ``code`` rerun trigger sees only a rule's script file, not the package it imports. Each
rule therefore passes ``params: code=code_hash(script)``: the sha256 over the code of every
``clipmech`` module the script imports, followed transitively through the package's own imports
(read with ``ast``, nothing is executed), and over the package data those modules' subpackages ship
on purpose (the atlas's stylesheet and script: :data:`DATA_SUFFIXES`; editor and backup files do not
count). Editing a function a rule uses changes that rule's params, and Snakemake's ``params`` trigger
reruns it and what depends on it; rules that do not import the edited module keep their outputs.

The open_clip configs of clipmech's own models (``models/model_configs/*.json``) are not part of any code
hash: each belongs to one architecture, so a rule that loads a model passes that model's config hash
instead (:func:`model_config_sha256`), and editing one config reruns that model's jobs only.

What is hashed is the parsed code, not the text: :func:`code_digest` drops comments, docstrings and
formatting, so editing a comment or a docstring reruns nothing. (The dump of the syntax tree can differ
between Python versions, so a new Python reruns everything once.)

Standard library only: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

PACKAGE = "clipmech"
PACKAGE_DIR = Path(__file__).resolve().parent
#: The package data a subpackage ships on purpose (pyproject.toml's package-data): anything else in its
#: folders (editor swap and backup files, caches) is not hashed.
DATA_SUFFIXES = frozenset({".json", ".css", ".js"})
#: clipmech's open_clip model configs, relative to the package: hashed per model, not per rule.
MODEL_CONFIGS = Path("models") / "model_configs"


def _module_file(name: str) -> Path | None:
    """The source file of a dotted ``clipmech`` module name, or None if it is not a module file."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(source: str) -> set[str]:
    """Dotted names of the clipmech modules a source file imports (``from clipmech import x`` counts x)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_closure(script: str | Path) -> list[Path]:
    """Every clipmech source file a script imports, directly or through other clipmech modules.

    Returns
    -------
    list of pathlib.Path
        Sorted; includes package ``__init__.py`` files on the way.

    Raises
    ------
    FileNotFoundError
        If the script does not exist.
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"workflow script {script} does not exist")
    seen: set[Path] = set()
    pending = list(_imported_modules(script.read_text()))
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        pending.extend(_imported_modules(path.read_text()))
        parent = name.rsplit(".", 1)[0]
        if parent != name:
            pending.append(parent)
    return sorted(seen)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring of the module and of every class and function, in place."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def code_digest(source: str) -> bytes:
    """The code of a module without its comments, docstrings and layout: the dump of its syntax tree.

    Raises
    ------
    SyntaxError
        If ``source`` is not valid Python.
    """
    return ast.dump(_strip_docstrings(ast.parse(source)), include_attributes=False).encode()


def _is_package_data(path: Path, directory: Path) -> bool:
    """Whether a file below a subpackage's folder is data it ships: an allowed suffix, no hidden part,
    not a model config (those are hashed per model)."""
    relative = path.relative_to(directory)
    return (
        path.is_file()
        and path.suffix in DATA_SUFFIXES
        and not any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
        and not path.is_relative_to(PACKAGE_DIR / MODEL_CONFIGS)
    )


def package_data(modules: list[Path]) -> list[Path]:
    """The data files the subpackages of the modules ship (:data:`DATA_SUFFIXES`: ``atlas/assets/*``).

    The package root's own directory is not a subpackage here: only the directories below it that hold
    a module of ``modules`` count, searched recursively. Hidden files, editor backups (``*~``, ``*.swp``),
    caches and clipmech's model configs (:func:`model_config_sha256`) are left out.
    """
    directories = {path.parent for path in modules if path.parent != PACKAGE_DIR}
    files = {path for directory in directories for path in directory.rglob("*") if _is_package_data(path, directory)}
    return sorted(files)


def model_config_sha256(architecture: str) -> str | None:
    """sha256 (first 16 hex digits) of clipmech's open_clip config of ``architecture``
    (``models/model_configs/<architecture>.json``), or None when the architecture is open_clip's own (its
    config comes with the installed open_clip, part of the software environment).

    A param of every rule that loads a model: editing one model's config reruns that model's jobs only.
    """
    path = PACKAGE_DIR / MODEL_CONFIGS / f"{architecture}.json"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def code_hash(script: str | Path) -> str:
    """sha256 (first 16 hex digits) over the script's own code, the code of the package modules it runs and
    the data files of their subpackages, each module and file keyed by its path relative to the package (so
    the hash does not depend on where the project lies)."""
    digest = hashlib.sha256()
    digest.update(code_digest(Path(script).read_text()))
    modules = module_closure(script)
    for path in modules:
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(b"\0")
        digest.update(code_digest(path.read_text()))
    for path in package_data(modules):
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def export_package() -> None:
    """Put this package's source folder first on ``PYTHONPATH``, so that the jobs a workflow starts import
    the package their code hash covers, not one installed from another checkout of the project."""
    src = str(PACKAGE_DIR.parent)
    rest = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *rest])
