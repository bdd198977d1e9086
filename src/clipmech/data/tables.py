"""Result tables: tab-separated files with six significant digits; result records as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd


def write_table(table: pd.DataFrame, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.6g")


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
    """``record`` as indented JSON (:func:`json_ready`: NaN as null) and a final newline, parents created."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(json_ready(record), indent=2) + "\n")
