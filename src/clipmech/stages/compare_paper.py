"""One paper's reported numbers beside ours (methods.md Sec. 11): the stage of rule ``compare_paper``."""

from __future__ import annotations

import logging

import pandas as pd

from clipmech.data import tables
from clipmech.papers.compare import comparison_table

log = logging.getLogger(__name__)


def compare_paper(*, paper: str, sources: list[dict], comparison: str) -> None:
    """Write ``comparison`` (TSV, :data:`clipmech.papers.compare.COLUMNS`): every number the paper reports
    that the pipeline has an analogue of, beside ours from the result tables ``sources``
    (:func:`clipmech.papers.sources.paper_sources` of the run; each read as a TSV).

    Raises
    ------
    ValueError
        If ``paper`` is unknown (:func:`clipmech.papers.compare.comparison_table`).
    """
    read = {source["path"]: pd.read_csv(source["path"], sep="\t") for source in sources}
    table = comparison_table(paper, sources, read)
    log.info("%s: %s", paper, table["status"].value_counts().to_dict())
    tables.write_table(table, comparison)
