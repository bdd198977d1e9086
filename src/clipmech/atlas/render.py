"""HTML of the atlas (methods.md Sec. 10) with the standard library only: ``string.Template`` and ``html.escape``.

Every text that comes from data is escaped; numbers are formatted here. Pages reference only files of
the site (``atlas.css``, ``atlas.js``, thumbnails) by relative paths, so the site works from
``file://`` and from any static server, with no request leaving it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from string import Template

import numpy as np

from clipmech.data.shapes import FEATURES

#: Columns of the index, in order: (key, header, sort type, header tooltip).
#: Rows of the index shown at a time: sorting and filtering then move one page of rows, whatever the units.
INDEX_PAGE_ROWS = 500
INDEX_COLUMNS = (
    ("kind", "kind", "text", ""),
    ("unit", "unit", "text", ""),
    ("layer", "layer / site", "text", ""),
    ("entropy", "entropy (nats)", "number", "Algorithm 1 entropy over the top images; low: selective"),
    ("top", "top concept", "text", ""),
    ("affinity", "top affinity", "number", ""),
    (
        "max",
        "highest activation",
        "number",
        "the top image's image-level activation; negative when the unit is negative on every image "
        "(then the least negative)",
    ),
    ("note", "note", "text", ""),
)
#: What a Shapes dataset's concepts are (:attr:`clipmech.data.concepts.Concepts.source`): their affinities keep
#: the title "Feature affinities"; other concepts are named by their source.
SHAPES_SOURCE = "Shapes features"
#: What the index and the links say of a unit without a page.
INDEX_ONLY = "in the index only (past atlas.max_units)"
DEAD = "dead: the same activation on every image (no page)"


@dataclass(frozen=True)
class Link:
    """A link to another unit's page, by its address ``units/<kind>/<key>.html``; ``page`` False when that
    unit is listed in the index only (past ``atlas.max_units``, or ``dead``): then it is shown as text."""

    label: str
    kind: str
    key: str
    page: bool
    dead: bool = False


@dataclass(frozen=True)
class Table:
    """A section of a unit page: a title and rows of cells (str, int, float, Link or None)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]


@dataclass
class UnitPage:
    """Everything one unit's page and index row show.

    Attributes
    ----------
    kind : str
        One of :data:`clipmech.atlas.gather.KINDS`.
    key : str
        The page's file stem: the address is ``units/<kind>/<key>.html``.
    title : str
    layer : str
        The index's layer / site column.
    entropy : float
        Algorithm 1 entropy (nats), NaN when undefined.
    affinity_F : numpy.ndarray, (F,)
        Concept affinities (rows of Algorithm 1), one per name of ``concepts``.
    hist_counts_B, hist_edges_B : numpy.ndarray, (bins,), (bins + 1,)
        Activation histogram over the dataset's images.
    images_K : numpy.ndarray, int, (K,)
        Top images, by descending activation.
    acts_K : numpy.ndarray, float, (K,)
    activation : str
        What the unit's image-level activation is (:data:`clipmech.atlas.gather.ACTIVATIONS`), named on its page.
    maps_K : numpy.ndarray, uint8, (K, rows * cols), or None
        Patch heatmaps on the top images, 0..255 between the unit's lowest and highest patch (:func:`clipmech.atlas.gather.quantise_maps`).
    grid : tuple of int or None
        (rows, cols) of the maps.
    facts : list of (str, str)
        Key numbers shown at the top.
    tables : list of Table
    note : str
        Short text for the index (OMP words, an SAE latent's top concept...).
    page : bool
        Whether a full page is written (False: index only).
    dead : bool
        The unit's activation is the same on every image (:mod:`clipmech.analyses.dead`): no page.
    concepts : tuple of F str
        The concepts' names (default the 16 Shapes features; a natural-image dataset's classes, categories or
        words, :func:`clipmech.data.concepts.concept_matrix`).
    concept_source : str
        What the concepts are (:attr:`clipmech.data.concepts.Concepts.source`), named on the page.
    """

    kind: str
    key: str
    title: str
    layer: str
    entropy: float
    affinity_F: np.ndarray
    hist_counts_B: np.ndarray
    hist_edges_B: np.ndarray
    images_K: np.ndarray
    acts_K: np.ndarray
    activation: str
    maps_K: np.ndarray | None = None
    grid: tuple[int, int] | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    note: str = ""
    page: bool = True
    dead: bool = False
    concepts: tuple[str, ...] = FEATURES
    concept_source: str = SHAPES_SOURCE

    @property
    def href(self) -> str:
        return unit_href(self.kind, self.key)

    @property
    def top_concept(self) -> str:
        return self.concepts[int(np.argmax(self.affinity_F))] if np.isfinite(self.affinity_F).all() else ""


def unit_href(kind: str, key: str) -> str:
    """A unit page's address relative to the site root: ``units/<kind>/<key>.html``."""
    return f"units/{kind}/{key}.html"


def number(value, digits: int = 3) -> str:
    """A number for display: ``digits`` significant digits, '' for None or NaN."""
    if value is None:
        return ""
    value = float(value)
    if math.isnan(value):
        return ""
    return f"{value:.{digits}g}"


_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<link rel="stylesheet" href="${root}atlas.css">
</head>
<body data-page="$page_kind">
<header><a href="${root}index.html">$model atlas</a> $crumb</header>
<main>
$body
</main>
<script src="${root}atlas.js"></script>
</body>
</html>
""")


def activation_label(value: float) -> str:
    """What a unit's highest image-level activation is called: the least negative one when it is negative."""
    return "least negative activation (negative on every image)" if value < 0 else "highest activation"


def key_html(key: str) -> str:
    """A unit key or site name, escaped, with a line break allowed after each dot (long SAE keys wrap)."""
    return escape(key).replace(".", ".<wbr>")


def unit_name_html(label: str, href: str, page: bool, dead: bool) -> str:
    """A unit's name: a link to its page, or greyed text saying why it has none."""
    if page:
        return f'<a class="key" href="{escape(href)}">{key_html(label)}</a>'
    return f'<span class="index-only" title="{DEAD if dead else INDEX_ONLY}">{key_html(label)}</span>'


def _cell(value, root: str) -> str:
    if isinstance(value, Link):
        return unit_name_html(value.label, root + unit_href(value.kind, value.key), value.page, value.dead)
    if isinstance(value, float | np.floating):
        return escape(number(value))
    return "" if value is None else escape(str(value))


def table_html(table: Table, root: str) -> str:
    """A :class:`Table` as an HTML section."""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(v, root)}</td>" for v in row) + "</tr>" for row in table.rows)
    return (
        f'<section class="table"><h2>{escape(table.title)}</h2>\n'
        f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></section>"
    )


def histogram_svg(
    counts_B: np.ndarray, edges_B: np.ndarray, marks: np.ndarray, width: int = 360, height: int = 140
) -> str:
    """An inline SVG bar chart of a histogram, with ticks at ``marks`` (the top images' activations): the
    activation range at both ends of the axis, the images in the tallest bar above it."""
    counts_B = np.asarray(counts_B, dtype=np.float64)
    peak = counts_B.max() if counts_B.size and counts_B.max() > 0 else 1.0
    low, high = float(edges_B[0]), float(edges_B[-1])
    axis, top = height - 18, 18  # the baseline, with the range labels below it; the peak label above the bars
    scale = (axis - top) / peak
    bar_w = width / counts_B.size
    bars = "".join(
        f'<rect x="{i * bar_w:.2f}" y="{axis - scale * c:.2f}" width="{max(bar_w - 1, 0.5):.2f}" '
        f'height="{scale * c:.2f}"><title>{number(edges_B[i])} to {number(edges_B[i + 1])}: '
        f"{int(c)} images</title></rect>"
        for i, c in enumerate(counts_B)
    )
    ticks = "".join(
        f'<line class="mark" x1="{x:.2f}" x2="{x:.2f}" y1="{axis}" y2="{axis + 5}"/>'
        for x in (width * (float(m) - low) / (high - low) for m in marks)
    )
    return (
        f'<svg class="histogram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="activation histogram">{bars}{ticks}'
        f'<line class="axis" x1="0" x2="{width}" y1="{axis}" y2="{axis}"/>'
        f'<text x="0" y="12">{int(peak)} images</text>'
        f'<text x="0" y="{height - 2}">{escape(number(low))}</text>'
        f'<text x="{width / 2:g}" y="{height - 2}" text-anchor="middle">activation</text>'
        f'<text x="{width}" y="{height - 2}" text-anchor="end">{escape(number(high))}</text></svg>'
    )


def affinity_html(affinity_F: np.ndarray, names: tuple[str, ...] = FEATURES) -> str:
    """The concept affinities (named by ``names``, default the 16 Shapes features) as labelled bars, largest first."""
    order = np.argsort(-np.nan_to_num(affinity_F, nan=-1.0), kind="stable")
    peak = float(np.nanmax(affinity_F)) if np.isfinite(affinity_F).any() and np.nanmax(affinity_F) > 0 else 1.0
    rows = "\n".join(
        f'<tr><td>{escape(names[f])}</td><td class="bar"><span style="width:{100 * affinity_F[f] / peak:.1f}%">'
        f"</span></td><td>{number(affinity_F[f])}</td></tr>"
        for f in order
        if np.isfinite(affinity_F[f])
    )
    return f'<table class="affinity"><tbody>\n{rows}\n</tbody></table>'


def affinity_title(source: str, dataset: str) -> str:
    """The title of a page's affinities: what the concepts are (``source``) and the images (``dataset``)."""
    if source == SHAPES_SOURCE:
        return f"Feature affinities (Algorithm 1 over the top images; {dataset})"
    return f"Concept affinities: the {source} (Algorithm 1 over the top images; {dataset})"


def unit_page_html(unit: UnitPage, model: str, dataset: str) -> str:
    """The HTML of one unit's page (written at ``units/<kind>/<key>.html``); ``dataset`` names the dataset and
    split of its images (top images, histogram, affinities), e.g. ``shapes: all 500 images``."""
    root = "../../"
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in unit.facts)
    figures = []
    for i, (image, act) in enumerate(zip(unit.images_K.tolist(), unit.acts_K.tolist())):
        canvas = f'<canvas class="heat" data-map="{i}" hidden></canvas>' if unit.maps_K is not None else ""
        figures.append(
            f'<figure class="top"><div class="frame"><img src="{root}images/{image}.png" alt="image {image}">'
            f"{canvas}</div><figcaption>image {image}: {escape(number(act))}</figcaption></figure>"
        )
    maps = ""
    if unit.maps_K is not None:
        payload = {"grid": list(unit.grid), "maps": unit.maps_K.astype(int).tolist()}
        maps = f'<script type="application/json" id="maps">{json.dumps(payload, separators=(",", ":"))}</script>'
        toggle = '<label><input type="checkbox" id="overlay"> patch heatmaps</label>'  # off: they hide small images
    else:
        toggle = ""
    highest = float(unit.acts_K[0])
    body = f"""<h1>{escape(unit.title)}</h1>
<dl class="facts"><dt>entropy (nats)</dt><dd>{escape(number(unit.entropy))}</dd>
<dt>{escape(activation_label(highest))}</dt><dd>{escape(number(highest))}</dd>
<dt>image-level activation</dt><dd>{escape(unit.activation)}</dd>
<dt>images</dt><dd>{escape(dataset)}</dd>{facts}</dl>
<section><h2>Top-activating images ({escape(dataset)})</h2>{toggle}
<div class="tops">{"".join(figures)}</div>{maps}</section>
<div class="columns">
<section><h2>Activation histogram ({escape(dataset)})</h2>{histogram_svg(unit.hist_counts_B, unit.hist_edges_B, unit.acts_K)}
<p class="caption">{int(unit.hist_counts_B.sum())} images; ticks: the top images.</p></section>
<section><h2>{escape(affinity_title(unit.concept_source, dataset))}</h2>{affinity_html(unit.affinity_F, unit.concepts)}</section>
</div>
{"".join(table_html(t, root) for t in unit.tables)}"""
    return _PAGE.substitute(
        title=escape(f"{model}: {unit.title}"),
        root=root,
        page_kind="unit",
        model=escape(model),
        crumb=f"/ {escape(unit.kind)} / {escape(unit.key)}",
        body=body,
    )


#: The fields of an index row in the index's JSON (:func:`index_rows`): the columns' texts, then whether the
#: unit has a page and whether it is dead (0 or 1).
ROW_FIELDS = (*(key for key, *_ in INDEX_COLUMNS), "page", "dead")


def index_rows(units: list[UnitPage]) -> list[list]:
    """The index's rows, one per unit in order, as lists of :data:`ROW_FIELDS`: the texts the columns show
    (numbers formatted by :func:`number`; sorting reads them back) and ``page``, ``dead`` as 0 or 1."""
    rows = []
    for u in units:
        affinity = float(np.nanmax(u.affinity_F)) if np.isfinite(u.affinity_F).any() else float("nan")
        top_act = float(u.acts_K[0]) if u.acts_K.size else float("nan")
        values = {
            "kind": u.kind,
            "unit": u.key,
            "layer": u.layer,
            "entropy": number(u.entropy, 4),
            "top": u.top_concept,
            "affinity": number(affinity),
            "max": number(top_act),
            "note": "dead (the same activation on every image)" if u.dead else u.note,
            "page": int(u.page),
            "dead": int(u.dead),
        }
        rows.append([values[key] for key in ROW_FIELDS])
    return rows


def index_html(units: list[UnitPage], model: str, facts: list[tuple[str, str]]) -> str:
    """The index: ``facts`` and the number of dead units per kind, then every unit (with or without a page)
    in one sortable, filterable table. The rows are data, not HTML: a JSON script (``#rows``: ``fields``,
    :data:`ROW_FIELDS`, and ``rows``, :func:`index_rows`) from which atlas.js builds the table's rows of
    the :data:`INDEX_PAGE_ROWS` matching units shown at a time, so that an index of ~100,000 units stays
    quick to load, sort and filter (methods.md Sec. 10)."""
    head = "".join(
        f'<th><button type="button" data-sort="{key}" data-type="{kind}"'
        + (f' title="{escape(tip)}"' if tip else "")
        + f">{escape(label)}</button></th>"
        for key, label, kind, tip in INDEX_COLUMNS
    )
    payload = json.dumps({"fields": ROW_FIELDS, "rows": index_rows(units)}, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c")  # no "</script>" inside the script

    def options(key: str) -> str:
        seen = sorted({getattr(u, key) if key != "top" else u.top_concept for u in units} - {""})
        return "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in seen)

    dead = Counter(u.kind for u in units if u.dead)
    dead_text = f"{sum(dead.values())}" + (" (" + ", ".join(f"{n} {k}" for k, n in dead.items()) + ")" if dead else "")
    facts = [*facts, ("dead units", f"{dead_text}: the same activation on every image, no page")]
    fact_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    body = f"""<h1>{escape(model)}: {len(units)} units</h1>
<dl class="facts">{fact_html}</dl>
<form id="filters" onsubmit="return false">
<label>kind <select id="f-kind"><option value="">all</option>{options("kind")}</select></label>
<label>layer / site <select id="f-layer"><option value="">all</option>{options("layer")}</select></label>
<label>entropy from <input id="f-emin" type="number" step="any" size="6"></label>
<label>to <input id="f-emax" type="number" step="any" size="6"></label>
<label>top concept <select id="f-top"><option value="">all</option>{options("top")}</select></label>
<label>search <input id="f-search" type="search" placeholder="unit, concept, word"></label>
<output id="count"></output>
<span>rows <output id="position"></output>
<button type="button" id="previous">previous</button> <button type="button" id="next">next</button></span>
</form>
<p class="caption">Units in grey have no page: past <code>atlas.max_units</code> (the most selective units get
pages), or dead (the same activation on every image).</p>
<noscript><p>The table of units is drawn by atlas.js: it needs JavaScript.</p></noscript>
<table id="units" data-page-size="{INDEX_PAGE_ROWS}" data-index-only="{escape(INDEX_ONLY)}" data-dead="{escape(DEAD)}">
<thead><tr>{head}</tr></thead>
<tbody></tbody></table>
<script type="application/json" id="rows">{payload}</script>"""
    return _PAGE.substitute(
        title=escape(f"{model} atlas"), root="", page_kind="index", model=escape(model), crumb="", body=body
    )
