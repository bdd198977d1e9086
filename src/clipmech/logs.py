"""Logging for workflow jobs."""

from __future__ import annotations

import logging
import sys
import warnings


def to_file(path: str) -> None:
    """Send logging, warnings and stderr (tqdm progress, tracebacks) of a job to its log file."""
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        stream=stream, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
