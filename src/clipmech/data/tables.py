"""Result tables: tab-separated files with six significant digits; result records as JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from clipmech import artefacts


def write_table(table: pd.DataFrame, path: str) -> None:
    """``table`` as a tab-separated file, six significant digits, published whole (artefacts.write_text)."""
    artefacts.write_text(path, table.to_csv(sep="\t", index=False, float_format="%.6g"))


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
