"""The tables of a unit page, from the analyses' TSV tables (methods.md Secs. 5, 7, 8, 9): pure functions.

Each function takes the analysis's table (as its stage writes it) and one unit, and returns a
:class:`clipmech.atlas.render.Table`, or None when the table says nothing about the unit.
"""

from __future__ import annotations

import pandas as pd

from clipmech.atlas.render import Table

#: The MiCLIP method whose descriptions a page shows (MiCLIP's own; the baselines are in the tables).
MICLIP_METHOD = "miclip"
#: The vocabularies of MiCLIP descriptions, in page order.
MICLIP_VOCABULARIES = ("shapes", "concepts", "words")


def _interval(value, low, high) -> str:
    parts = [f"{float(value):.3g}"] if pd.notna(value) else [""]
    if pd.notna(low) and pd.notna(high):
        parts.append(f"[{float(low):.3g}, {float(high):.3g}]")
    return " ".join(parts)


def concept_auroc(auroc: pd.DataFrame, sites: dict[str, str], unit: int, dataset: str) -> Table | None:
    """The unit's concept AUROCs (``patching/.../auroc.tsv``, methods.md Sec. 8.5) on the patching dataset
    ``dataset`` (its images counted from the table's ``n_pos + n_neg``) at the given sites, one column per
    site, concepts by descending AUROC at the first site. The title names the dataset; the analysis reads a
    unit by the page's image-level activation (the mean over the patch tokens, methods.md Sec. 9.3).

    ``sites``: {site name in the table: column header}.
    """
    rows = auroc[(auroc["tower"] == "visual") & auroc["site"].isin(list(sites)) & (auroc["unit"] == unit)]
    if rows.empty:
        return None
    wide = rows.pivot_table(index="concept", columns="site", values="auroc", aggfunc="first")
    present = [s for s in sites if s in wide.columns]
    wide = wide[present].sort_values(present[0], ascending=False, kind="stable")
    n_images = int(rows["n_pos"].iloc[0] + rows["n_neg"].iloc[0])
    return Table(
        title=f"Concept AUROC on {dataset} (all {n_images} images; images with vs without the concept; "
        "the unit's image-level activation, methods.md Sec. 8.5)",
        columns=("concept", *(sites[s] for s in present)),
        rows=tuple((concept, *(float(v) for v in values)) for concept, values in zip(wide.index, wide.to_numpy())),
    )


def recovery(
    table: pd.DataFrame,
    family: str,
    dataset: str,
    *,
    unit: int | None = None,
    head: int | None = None,
    pair: str | None = None,
) -> Table | None:
    """Patching effects (``patching/.../recovery.tsv``, methods.md Sec. 8) on the minimal pairs of ``dataset``
    of one component: the rows of ``family`` with that ``unit`` (a channel) or ``head``. With ``pair`` (a
    neuron-head pair's key) the title says that the effects are the whole head's: patching has no
    pair-level component."""
    rows = table[table["family"] == family]
    if unit is not None:
        rows = rows[rows["unit"] == unit]
    if head is not None:
        rows = rows[rows["head"] == head]
    if rows.empty:
        return None
    what = f"head {head}" if head is not None else f"channel {unit}"
    if pair is not None:
        what += f", the whole head: all its neurons at once, not pair {pair} alone (no pair-level patching)"
    return Table(
        title=f"Patching effects of {family} {what}, on the minimal pairs of {dataset} (pairs: per row): "
        "recovery R and Delta logit [95 % CI]",
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


def sae_alignment(latents: pd.DataFrame, metrics: dict, latent: int, dataset: str) -> Table | None:
    """An SAE latent's evaluation (methods.md Sec. 7.4): its firing frequency on the held-out tokens and its top
    concept's image AUROC and AP on the alignment's images, from ``evaluate_sae``'s per-latent table
    (``latents.tsv``, indexed by ``latent``) and its ``metrics.json`` (``split``, ``n_holdout_images``,
    ``n_split_images``), on ``dataset``; None when the table has no row of the latent."""
    if latent not in latents.index:
        return None
    r = latents.loc[latent]
    n_images = metrics["n_split_images"]
    images = f"its {n_images} held-out images" if metrics["split"] == "holdout" else f"all {n_images} images"
    return Table(
        title=f"SAE concept alignment on {dataset} ({images}; methods.md Sec. 7.4)",
        columns=("measure", "value"),
        rows=(
            (f"firing frequency (tokens of the {metrics['n_holdout_images']} held-out images)", float(r["frequency"])),
            ("top concept (highest image AUROC)", r["top_concept"] if isinstance(r["top_concept"], str) else ""),
            ("image AUROC", float(r["auroc_image"])),
            ("AP", float(r["ap"])),
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


def miclip_descriptions(descriptions: pd.DataFrame, unit: int, dataset: str) -> Table | None:
    """MiCLIP's descriptions of a unit (methods.md Sec. 9, Eq. 4) on ``dataset``, method ``miclip``, both
    vocabularies, per encoder seed: each seed trains its own encoder and describes the unit on its own. Each
    row says in how many of the S seeds (those in the table) the concept describes the unit in that
    vocabulary, so a description one seed alone gives reads as such."""
    miclip = descriptions[
        (descriptions["method"] == MICLIP_METHOD) & descriptions["vocabulary"].isin(MICLIP_VOCABULARIES)
    ]
    rows = miclip[miclip["unit"] == unit]
    if rows.empty:
        return None
    n_seeds = miclip["seed"].nunique()
    agreement = rows.groupby(["vocabulary", "concept"])["seed"].nunique()
    order = {v: i for i, v in enumerate(MICLIP_VOCABULARIES)}
    rows = rows.sort_values(
        ["vocabulary", "seed", "rank"], key=lambda c: c.map(order) if c.name == "vocabulary" else c, kind="stable"
    )
    return Table(
        title=f"MiCLIP descriptions on {dataset}, per encoder seed ({n_seeds} seeds)",
        columns=("vocabulary", "seed", "rank", "concept", "score", "described by"),
        rows=tuple(
            (
                r.vocabulary,
                int(r.seed),
                int(r.rank),
                r.concept,
                float(r.score),
                f"{int(agreement[(r.vocabulary, r.concept)])} of {n_seeds} seeds",
            )
            for r in rows.itertuples(index=False)
        ),
    )


def miclip_localisation(
    localisation: pd.DataFrame, interventions: pd.DataFrame, unit: int, dataset: str
) -> Table | None:
    """The concepts a unit was localised for (methods.md Sec. 9, Eq. 3) on ``dataset``, per method and per seed
    that selected it, with how stable the selection is (chosen by k of the method's S seeds: those in the
    localisation table; an unseeded method has one) and the Delta Acc (Eq. 5, percentage points) of that
    seed's interventions on the concept, whose top-tau units held this one, on the ``n_images`` images of
    the concept they were measured on. A seed that did not select the unit is not shown: its interventions
    never touched it."""
    rows = localisation[localisation["unit"] == unit]
    if rows.empty:
        return None
    n_seeds = localisation.groupby("method")["seed"].nunique()
    out = []
    for (concept, method), chosen in rows.groupby(["concept", "method"], sort=True):
        stability = f"{chosen['seed'].nunique()} of {int(n_seeds[method])} seeds"
        for r in chosen.sort_values("seed", kind="stable").itertuples(index=False):
            done = interventions[
                (interventions["concept"] == concept)
                & (interventions["method"] == method)
                & (interventions["seed"] == r.seed)
            ].sort_values(["intervention", "beta"], kind="stable")
            text = "; ".join(f"{x.intervention} {x.beta:g}: {x.delta_acc:+.3f}" for x in done.itertuples(index=False))
            images = int(done["n_images"].iloc[0]) if len(done) else ""
            out.append((concept, method, stability, int(r.seed), int(r.rank), float(r.score), images, text))
    return Table(
        title=f"MiCLIP localisation on {dataset}: the concepts this unit was localised for, per seed that chose it, "
        "and the Delta Acc of that seed's interventions",
        columns=(
            "concept",
            "method",
            "chosen by",
            "seed",
            "rank",
            "score",
            "images",
            "Delta Acc, pp (intervention beta)",
        ),
        rows=tuple(out),
    )


def links(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table | None:
    """A table of related units (cells may be :class:`clipmech.atlas.render.Link`); None without rows."""
    return Table(title=title, columns=columns, rows=tuple(rows)) if rows else None
