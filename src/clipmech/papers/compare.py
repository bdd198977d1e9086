"""Our numbers beside the papers' (methods.md Sec. 11): one comparison table per paper.

For each number of :mod:`clipmech.papers.numbers`, each analogue selector is applied to every source table
of its kind (:func:`clipmech.papers.sources.paper_sources`), giving one row per value of ours (per task,
tower or site where our table has several). A number whose analogue tables the config did not produce
keeps one row, with ``status`` ``not run`` and ``ours`` empty, so that each paper table is laid out whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from clipmech.papers.numbers import PaperNumber, numbers_of

#: The columns of :func:`comparison_table`.
COLUMNS = (
    "table",
    "quantity",
    "paper_model",
    "paper_dataset",
    "paper",
    "paper_sd",
    "our_model",
    "our_dataset",
    "our_detail",
    "ours",
    "ours_sd",
    "status",
    "source",
    "claim",
    "note",
)
#: ``status`` values: both numbers; the paper gives none; our table lacks the selected rows; the config did
#: not produce the analogue's table.
STATUSES = ("compared", "paper gives no number", "not in our table", "not run")

_NAN = float("nan")


def _match(table: pd.DataFrame, **keys) -> pd.DataFrame:
    """Rows of ``table`` equal to every key (floats compared with ``np.isclose``)."""
    keep = np.ones(len(table), dtype=bool)
    for column, value in keys.items():
        values = table[column]
        keep &= np.isclose(values.astype(float), value) if isinstance(value, float) else (values == value).to_numpy()
    return table[keep]


def _per_task(rows: pd.DataFrame, values: pd.Series, label: str = "task") -> list[tuple[str, float, float]]:
    return [(f"{label} {task}", float(value), _NAN) for task, value in zip(rows[label], values)]


def _superposition(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, **{k: s[k] for k in ("score", "separability", "method", "pair_type")})
    return [
        (f"{s['score']}, {s['method']}, n_pairs {int(n)}", float(v), _NAN)
        for n, v in zip(rows["n_pairs"], rows["statistic"])
    ]


def _ablation(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    if s["column"] == "model_accuracy":
        rows = table.drop_duplicates("task")
        return _per_task(rows, 100.0 * rows["model_accuracy"])
    rows = _match(table, level=s["level"], fraction=float(s["fraction"]))
    return _per_task(rows, 100.0 * (rows["model_accuracy"] - rows["accuracy"]))


def _segmentation(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, method=s["method"], scoring=s["scoring"])
    return [(f"task {t}, {s['scoring']}", 100.0 * float(v), _NAN) for t, v in zip(rows["task"], rows["miou"])]


def _pascal(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, method=s["method"])
    return [(f"{int(n)} images", 100.0 * float(v), _NAN) for n, v in zip(rows["n_images"], rows["miou"])]


def _auroc(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    if s["column"] == "modality_invariant_share":
        concepts = table.drop_duplicates("concept")
        if concepts.empty:
            return []
        share = 100.0 * concepts["modality_invariant"].astype(str).str.lower().eq("true").mean()
        return [(f"{len(concepts)} concepts", float(share), _NAN)]
    rows = _match(table, concept_type=s["concept_type"])
    if rows.empty:
        return []
    return [(f"both towers, {rows['concept'].nunique()} concepts", float(rows["n_selective"].sum()), _NAN)]


def _interventions(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, scale=float(s["scale"]))
    values = rows[s["column"]].astype(float).dropna()
    if values.empty:
        return []
    return [(f"scale x{s['scale']:g}, mean over {len(values)} concepts", float(values.mean()), _NAN)]


def _circuit(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, order=s["order"])
    return [
        (f"{tower} tower, {corruption}", float(v), _NAN)
        for tower, corruption, v in zip(rows["tower"], rows["corruption"], rows[s["column"]])
    ]


def _description_accuracy(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, method=s["method"])
    column = s["column"]
    sd = column[: -len("_mean")] + "_sd"
    return [(f"{int(n)} units", float(v), float(d)) for n, v, d in zip(rows["n_units"], rows[column], rows[sd])]


def _delta_acc(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, method=s["method"], intervention=s["intervention"], beta=float(s["beta"]))
    return [
        (f"{int(n)} seeds", float(v), float(d))
        for n, v, d in zip(rows["n_seeds"], rows["delta_acc_mean"], rows["delta_acc_sd"])
    ]


def _miclip_ablation(table: pd.DataFrame, s: dict) -> list[tuple[str, float, float]]:
    rows = _match(table, loss=s["loss"])
    mean, sd = f"{s['column']}_mean", f"{s['column']}_sd"
    if mean not in rows.columns:
        return []
    return [(f"loss {s['loss']}", float(v), float(d)) for v, d in zip(rows[mean], rows[sd])]


#: The reader of each kind of source table: (table, selector) -> [(detail, value, sd)].
EXTRACTORS = {
    "superposition": _superposition,
    "ablation": _ablation,
    "segmentation": _segmentation,
    "pascal": _pascal,
    "auroc": _auroc,
    "interventions": _interventions,
    "circuit": _circuit,
    "description_accuracy": _description_accuracy,
    "delta_acc": _delta_acc,
    "miclip_ablation": _miclip_ablation,
}


def _row(number: PaperNumber, **ours) -> dict:
    row = {
        "table": number.table,
        "quantity": number.quantity,
        "paper_model": number.model,
        "paper_dataset": number.dataset,
        "paper": number.value,
        "paper_sd": number.sd,
        "our_model": "",
        "our_dataset": "",
        "our_detail": "",
        "ours": _NAN,
        "ours_sd": _NAN,
        "status": "not run",
        "source": number.source,
        "claim": number.claim,
        "note": number.note,
    }
    return row | ours


def _applies(selector: dict, source: dict) -> bool:
    """A selector reads a source of its table kind (and, for MiCLIP, of its unit kind)."""
    if source["table"] != selector["table"]:
        return False
    return "unit_kind" not in selector or source.get("unit_kind") == selector["unit_kind"]


def _run_label(source: dict) -> str:
    return ", ".join(f"{key} {source[key]}" for key in ("site", "unit_kind") if key in source)


def comparison_table(paper: str, sources: Sequence[dict], tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The comparison of one paper: its numbers (:func:`clipmech.papers.numbers.numbers_of`) beside ours.

    Parameters
    ----------
    paper : str
        A key of :data:`clipmech.papers.numbers.PAPERS`.
    sources : sequence of dict
        :func:`clipmech.papers.sources.paper_sources` of the run.
    tables : mapping of str to pandas.DataFrame
        Each source's ``path`` -> its table as read from the TSV.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, in the paper's order; ``paper`` is the quoted string (empty where the paper gives
        no number), ``ours`` a float in the paper's unit (percent where the paper's is), ``status`` one of
        :data:`STATUSES`.

    Raises
    ------
    ValueError
        If ``paper`` is unknown, or a source's table is missing from ``tables``.
    KeyError
        If a source table lacks a column its selector reads (the message names it).
    """
    missing = [s["path"] for s in sources if s["path"] not in tables]
    if missing:
        raise ValueError(f"no table read for the sources: {', '.join(missing)}")
    rows = []
    for number in numbers_of(paper):
        found = []
        for selector in number.analogues:
            for source in (s for s in sources if _applies(selector, s)):
                values = EXTRACTORS[selector["table"]](tables[source["path"]], selector)
                where = {"our_model": source["model"], "our_dataset": source["dataset"]}
                label = _run_label(source)
                if not values:
                    found.append(_row(number, **where, our_detail=label, status="not in our table"))
                for detail, value, sd in values:
                    status = "compared" if number.value else "paper gives no number"
                    detail = f"{label}; {detail}" if label else detail
                    found.append(_row(number, **where, our_detail=detail, ours=value, ours_sd=sd, status=status))
        rows += found or [_row(number)]
    return pd.DataFrame(rows, columns=list(COLUMNS))
