"""The tables of a unit page, from the analyses' TSV tables (methods.md Secs. 5, 7, 8, 9): pure functions.

Each function takes the analysis's table (as its stage writes it) and one unit, and returns a
:class:`clipmech.atlas.render.Table`, or None when the table says nothing about the unit.
"""

from __future__ import annotations

import pandas as pd

from clipmech.atlas.render import Table

#: The MiCLIP method and seed whose descriptions a page shows (MiCLIP's own, the first seed).
MICLIP_METHOD, MICLIP_SEED = "miclip", 0
#: The vocabularies of MiCLIP descriptions, in page order.
MICLIP_VOCABULARIES = ("shapes", "words")


def _interval(value, low, high) -> str:
    parts = [f"{float(value):.3g}"] if pd.notna(value) else [""]
    if pd.notna(low) and pd.notna(high):
        parts.append(f"[{float(low):.3g}, {float(high):.3g}]")
    return " ".join(parts)


def concept_auroc(auroc: pd.DataFrame, sites: dict[str, str], unit: int) -> Table | None:
    """The unit's concept AUROCs (``patching/.../auroc.tsv``, methods.md Sec. 8) at the given sites, one column
    per site, concepts by descending AUROC at the first site.

    ``sites``: {site name in the table: column header}.
    """
    rows = auroc[(auroc["tower"] == "visual") & auroc["site"].isin(list(sites)) & (auroc["unit"] == unit)]
    if rows.empty:
        return None
    wide = rows.pivot_table(index="concept", columns="site", values="auroc", aggfunc="first")
    present = [s for s in sites if s in wide.columns]
    wide = wide[present].sort_values(present[0], ascending=False, kind="stable")
    return Table(
        title="Concept AUROC (images with vs without the concept)",
        columns=("concept", *(sites[s] for s in present)),
        rows=tuple((concept, *(float(v) for v in values)) for concept, values in zip(wide.index, wide.to_numpy())),
    )


def recovery(table: pd.DataFrame, family: str, *, unit: int | None = None, head: int | None = None) -> Table | None:
    """Patching effects (``patching/.../recovery.tsv``, methods.md Sec. 8) of one component: the rows of
    ``family`` with that ``unit`` (a channel) or ``head``."""
    rows = table[table["family"] == family]
    if unit is not None:
        rows = rows[rows["unit"] == unit]
    if head is not None:
        rows = rows[rows["head"] == head]
    if rows.empty:
        return None
    what = f"head {head}" if head is not None else f"channel {unit}"
    return Table(
        title=f"Patching effects of {family} {what}: recovery R and Delta logit [95 % CI]",
        columns=("corruption", "direction", "pairs", "R", "Delta logit"),
        rows=tuple(
            (
                r.corruption,
                r.direction,
                int(r.n_pairs) if pd.notna(r.n_pairs) else "",
                _interval(r.recovery, r.recovery_low, r.recovery_high),
                _interval(r.delta_logit, r.delta_logit_low, r.delta_logit_high),
            )
            for r in rows.itertuples(index=False)
        ),
    )


def omp_words(words: str) -> Table | None:
    """The OMP words of a direction (``decomposition/.../words.tsv``'s ``words``: ``word (+coef), ...``)."""
    if not isinstance(words, str) or not words:
        return None
    rows = []
    for item in words.split("), "):
        word, _, coefficient = item.rstrip(")").rpartition(" (")
        rows.append((word, float(coefficient)))
    return Table(
        title="OMP words of the pair's direction u (methods.md Sec. 5)",
        columns=("word", "coefficient"),
        rows=tuple(rows),
    )


def miclip_descriptions(descriptions: pd.DataFrame, unit: int) -> Table | None:
    """MiCLIP's descriptions of a unit (methods.md Sec. 9, Eq. 4): method ``miclip``, seed 0, both vocabularies."""
    rows = descriptions[
        (descriptions["unit"] == unit)
        & (descriptions["method"] == MICLIP_METHOD)
        & (descriptions["seed"] == MICLIP_SEED)
        & descriptions["vocabulary"].isin(MICLIP_VOCABULARIES)
    ]
    if rows.empty:
        return None
    order = {v: i for i, v in enumerate(MICLIP_VOCABULARIES)}
    rows = rows.sort_values(["vocabulary", "rank"], key=lambda c: c.map(order) if c.name == "vocabulary" else c)
    return Table(
        title="MiCLIP descriptions (seed 0)",
        columns=("vocabulary", "rank", "concept", "score"),
        rows=tuple((r.vocabulary, int(r.rank), r.concept, float(r.score)) for r in rows.itertuples(index=False)),
    )


def miclip_localisation(localisation: pd.DataFrame, interventions: pd.DataFrame, unit: int) -> Table | None:
    """The concepts a unit was localised for (methods.md Sec. 9, Eq. 3), by each method, with the Delta Acc of
    that method's interventions on the concept (Eq. 5): mean +- sd over seeds, per intervention and beta."""
    rows = localisation[localisation["unit"] == unit]
    if rows.empty:
        return None
    found = rows.groupby(["concept", "method"], sort=True).agg(rank=("rank", "min"), score=("score", "mean"))
    effects = interventions.groupby(["concept", "method", "intervention", "beta"], sort=True)["delta_acc"].agg(
        ["mean", "std", "count"]
    )
    out = []
    for (concept, method), found_row in found.iterrows():
        if (concept, method) in effects.index.droplevel([2, 3]):
            chosen = effects.loc[(concept, method)]
            text = "; ".join(
                f"{intervention} {beta:g}: {row['mean']:+.3f}"
                + (f" +- {row['std']:.3f}" if row["count"] > 1 else "")
                + f" (n={int(row['count'])})"
                for (intervention, beta), row in chosen.iterrows()
            )
        else:
            text = ""
        out.append((concept, method, int(found_row["rank"]), float(found_row["score"]), text))
    return Table(
        title="MiCLIP localisation: concepts this unit was localised for, and Delta Acc of their interventions",
        columns=("concept", "method", "rank", "score", "Delta Acc (intervention beta: mean +- sd over seeds)"),
        rows=tuple(out),
    )


def links(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table | None:
    """A table of related units (cells may be :class:`clipmech.atlas.render.Link`); None without rows."""
    return Table(title=title, columns=columns, rows=tuple(rows)) if rows else None
