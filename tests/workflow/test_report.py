"""``snakemake --report``: a self-contained HTML report of a finished tiny run.

Every output a rule registers with ``report(...)`` that the run produced must be in the report,
under the category and subcategory the rule gives it. The registered outputs are read from the
rule files, so outputs that rules register later are checked too.
"""

from __future__ import annotations

import json
import re

import pytest
from snakemake_cli import ROOT, TINY, snakemake

pytestmark = pytest.mark.integration

# Report outputs are declared with common.smk's reported(path, caption, category[, subcategory]).
REPORTED_CALL = re.compile(
    r"reported\(\s*\"(?P<path>[^\"]+)\",\s*\"[^\"]+\",\s*\"(?P<category>[^\"]+)\""
    r"(?:,\s*\"(?P<subcategory>[^\"]+)\")?,?\s*\)"
)
DEFAULT_SUBCATEGORY = "{model} on {dataset}"


def registered_outputs():
    """(path pattern, category, subcategory pattern) of every ``reported(...)`` output in the workflow."""
    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    found = []
    for source in sources:
        for call in REPORTED_CALL.finditer(source.read_text()):
            found.append((call["path"], call["category"], call["subcategory"] or DEFAULT_SUBCATEGORY))
    return found


def as_regex(pattern: str) -> re.Pattern:
    """A Snakemake path pattern with ``{wildcard}``s as a regex whose groups are the wildcards."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
    return re.compile(regex + r"\Z")


def embedded(html: str, name: str):
    """The JSON object the report's ``<script id="...">`` assigns to ``var name``."""
    match = re.search(rf"var {name} = (\{{.*?\}});\s*</script>", html, re.DOTALL)
    assert match, f"the report has no `var {name} = {{...}}`"
    return json.loads(match[1])


def test_report_holds_every_registered_output_by_category(tiny_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake("--configfile", TINY, "--report", report, workdir=tiny_run)
    html = report.read_text()
    results, categories = embedded(html, "results"), embedded(html, "categories")

    registered = registered_outputs()
    assert len(registered) >= 7, registered  # the walking skeleton alone registers 7
    checked = 0
    for pattern, category, subcategory in registered:
        regex = as_regex(pattern)
        produced = [p for p in tiny_run.glob("results/**/*") if regex.match(str(p.relative_to(tiny_run)))]
        for path in produced:
            name = str(path.relative_to(tiny_run))
            assert name in results, f"{name} (registered as {pattern}) is not in the report"
            assert results[name]["data_uri"].startswith("data:"), f"{name} is not embedded in the report"
            wildcards = regex.match(name).groupdict()
            cat = category.format(**wildcards) if category else "Other"  # Snakemake's default for both
            sub = subcategory.format(**wildcards) if subcategory else "Other"
            assert cat in categories, f"category {cat!r} of {name} is not in the report"
            assert name in categories[cat].get(sub, []), f"{name} is not under {cat} / {sub}"
            checked += 1
    assert checked >= 7
    assert set(categories) >= {"1 Datasets", "2 Models", "3 Neuron selectivity"}
