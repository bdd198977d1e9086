"""Result tables: tab-separated files with six significant digits; result records as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from clipmech import artefacts


def write_table(table: pd.DataFrame, path: str) -> None:
    """``table`` as a tab-separated file, six significant digits, published whole (artefacts.write_text)."""
    artefacts.write_text(path, table.to_csv(sep="\t", index=False, float_format="%.6g"))


def write_table_parts(parts: Iterable[pd.DataFrame], path: str) -> None:
    """Tables with the same columns, one after another, as one file of :func:`write_table`'s format, each part
    written as it comes, so that memory holds one part (its header once; the bytes of :func:`write_table` of
    their concatenation). Published whole.

    Raises
    ------
    ValueError
        If there is no part, or a part's columns differ from the first's (nothing is published).
    """

    def write_to(fh) -> None:
        columns = None
        for part in parts:
            if columns is not None and list(part.columns) != columns:
                raise ValueError(f"table parts of {path} differ in their columns: {list(part.columns)} after {columns}")
            fh.write(part.to_csv(sep="\t", index=False, float_format="%.6g", header=columns is None).encode("utf-8"))
            columns = list(part.columns)
        if columns is None:
            raise ValueError(f"no table parts to write to {path}")

    artefacts.write(path, write_to, rule=None, record=False)


def json_ready(value):
    """NaN and infinities as None (JSON has no NaN), numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(record: dict, path: str) -> None:
    """``record`` as indented JSON (:func:`json_ready`: NaN as null) and a final newline, parents created,
    published whole (artefacts.write_text)."""
    artefacts.write_text(path, json.dumps(json_ready(record), indent=2) + "\n")
