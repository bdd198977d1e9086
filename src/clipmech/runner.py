"""Call a stage from a workflow script: its keyword arguments bound by name from the job.

Each ``workflow/scripts/<rule>.py`` is two lines, ``run(<stage>, snakemake)``: the script maps nothing
by hand. A stage's keyword names are the rule's names. Each keyword is looked up in the rule's named
``input``, named ``output`` and ``params`` (a name in two of them is an error), then in ``wildcards``; ``inputs`` receives every named
input and ``out`` every named output as ``{name: path}``, ``threads`` the job's threads. A keyword annotated with a dataclass (a
:class:`clipmech.config.ModelSpec`, a section of the typed config) is built from the mapping the rule
passes (rules pass plain mappings, so Snakemake's ``params`` rerun trigger compares plain values).

Standard library only.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from clipmech.logs import to_file


def _paths(files: Any) -> dict[str, Any]:
    """Named inputs or outputs as plain ``str`` paths (several files of one name: a list of them)."""
    return {
        name: [str(item) for item in value] if isinstance(value, list) else str(value) for name, value in files.items()
    }


def bind(stage: Callable[..., Any], job: Any) -> dict[str, Any]:
    """The keyword arguments of ``stage`` from a Snakemake job object (``snakemake`` in a script).

    Raises
    ------
    TypeError
        If a keyword without a default is named by none of the rule's inputs, outputs, params or
        wildcards (the message names the stage, the keyword and what the rule offers), or by more than
        one of its inputs, outputs and params.
    """
    files = [("input", _paths(job.input)), ("output", _paths(job.output)), ("params", dict(job.params.items()))]
    wildcards = dict(job.wildcards.items())
    hints = typing.get_type_hints(stage)
    kwargs: dict[str, Any] = {}
    for name, parameter in inspect.signature(stage).parameters.items():
        if name in ("inputs", "out"):
            kwargs[name] = files[name == "out"][1]
            continue
        if name == "threads":
            kwargs[name] = job.threads
            continue
        named = [(kind, source[name]) for kind, source in files if name in source]
        if len(named) > 1:
            raise TypeError(
                f"stage {stage.__name__}: its rule names {name!r} in {' and '.join(kind for kind, _ in named)}; "
                "rename one of them"
            )
        if not named and name in wildcards:
            named = [("wildcards", wildcards[name])]
        if named:
            value, kind = named[0][1], hints.get(name)
            kwargs[name] = kind(**value) if dataclasses.is_dataclass(kind) and isinstance(value, dict) else value
        elif parameter.default is inspect.Parameter.empty:
            offered = sorted({key for _, source in files for key in source} | set(wildcards))
            raise TypeError(
                f"stage {stage.__name__} needs {name!r}, which its rule names nowhere; the rule's "
                f"inputs, outputs, params and wildcards are: {', '.join(offered)}"
            )
    return kwargs


def run(stage: Callable[..., Any], job: Any) -> Any:
    """Log to the job's log file, then call ``stage`` with :func:`bind`'s arguments."""
    to_file(job.log[0])
    return stage(**bind(stage, job))
