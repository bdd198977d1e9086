"""The atlas in a real browser (issue 14): headless Debian Chromium driven by Playwright.

The sites are those of the session's tiny run (conftest ``tiny_run``); one more is built from its results
with hand-written MiCLIP tables. The browser is the session's (``tests/workflow/conftest.py``: Debian's
Chromium driven by Playwright, never a downloaded browser). Screenshots of an index and a unit page go to pytest's base temporary
directory (``atlas-screenshots/``) and are copied to ``tests/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clipmech.atlas import render
from clipmech.atlas.site import ASSET_FILES, ASSETS
from clipmech.stages.build_atlas import build_atlas

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PAGE_ROWS = render.INDEX_PAGE_ROWS


def benchmark_module(name: str):
    """A script of benchmarks/ loaded as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sites(tiny_run) -> dict[str, Path]:
    return {p.name: p for p in sorted((tiny_run / "results" / "atlas").iterdir()) if p.is_dir()}


def visible(page, column: int) -> list[str]:
    return page.eval_on_selector_all(
        "#units tbody tr:not([hidden])", f"rows => rows.map(r => r.cells[{column}].textContent)"
    )


def kind_links(page) -> dict[str, list[str]]:
    """Per unit kind, the page links of the first page of its rows (the kind filter set to it, then reset)."""
    kinds = page.eval_on_selector_all("#f-kind option", "options => options.map(o => o.value).filter(v => v)")
    links = {}
    for kind in kinds:
        page.select_option("#f-kind", kind)
        links[kind] = page.eval_on_selector_all("#units tbody tr[data-page='1'] a", "links => links.map(a => a.href)")
    page.select_option("#f-kind", "")
    return links


def all_rows(page, script: str) -> list:
    """``script`` (a function of the visible rows) on every page of the index, from the first to the last."""
    rows = page.eval_on_selector_all("#units tbody tr", script)
    while not page.locator("#next").is_disabled():
        page.click("#next")
        rows += page.eval_on_selector_all("#units tbody tr", script)
    return rows


def test_every_model_has_a_site_with_every_unit_kind(tiny_run):
    found = {name: json.loads((site / "manifest.json").read_text()) for name, site in sites(tiny_run).items()}
    for name, manifest in found.items():  # the report's entry: units and pages per kind
        summary = pd.read_csv(tiny_run / "results" / "atlas" / f"{name}.tsv", sep="\t").set_index("kind")
        assert summary["units"].to_dict() == manifest["units"] and summary["pages"].to_dict() == manifest["pages"]
        assert (summary["index"] == f"results/atlas/{name}/index.html").all()
    assert set(found) == {"tiny-vit", "tiny-rn"}
    assert found["tiny-vit"]["units"] == {"mlp": 128, "sae": 128}  # 2 x 64 channels, 2 x 64 latents
    assert found["tiny-rn"]["units"] == {"neuron": 512, "pair": 8 * 512}
    assert all(set(m["pages"].values()) == {6} for m in found.values())  # atlas.max_units of tiny.yaml
    for name, manifest in found.items():
        assert not (tiny_run / "results" / "atlas" / f"{name}.partial").exists()
        assert sum(f["bytes"] for f in manifest["files"].values()) < 5e6


def test_index_and_unit_pages_load_offline_without_errors(tiny_run, visit, tmp_path_factory):
    shots = tmp_path_factory.getbasetemp() / "atlas-screenshots"
    shots.mkdir(exist_ok=True)
    for name, site in sites(tiny_run).items():
        v = visit()
        page = v.open(site / "index.html")
        assert page.locator("#count").text_content().endswith("units")
        kinds = {kind: links for kind, links in kind_links(page).items() if links}
        sample = [h for group in kinds.values() for h in group[:2]]  # the first two pages of each kind
        assert len(kinds) == 2 and all(h.split("/units/")[1].startswith(k + "/") for k in kinds for h in kinds[k])
        if name == "tiny-vit":
            page.screenshot(path=shots / "index.png")
        for href in sample:
            page.goto(href)
            page.wait_for_load_state("load")
            broken = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).length"
            )
            assert broken == 0, href
            drawn = page.eval_on_selector_all("canvas.heat", "cs => cs.map(c => c.width * c.height)")
            assert drawn and all(n > 0 for n in drawn), href  # every top image has its heatmap drawn
            assert page.locator("svg.histogram rect").count() > 0 and page.locator("table.affinity tr").count() == 16
        if name == "tiny-vit":
            page.goto(sample[0])
            page.screenshot(path=shots / "unit.png", full_page=True)
        assert v.problems == [], name
    ARTIFACTS.mkdir(exist_ok=True)
    for shot in ("index.png", "unit.png"):
        assert (shots / shot).stat().st_size > 10_000
        shutil.copyfile(shots / shot, ARTIFACTS / f"atlas-{shot}")
    print(f"atlas screenshots: {shots} (copied to {ARTIFACTS})")


def test_every_index_row_links_to_a_page_or_is_marked_index_only(tiny_run, visit):
    for name, site in sites(tiny_run).items():
        manifest = json.loads((site / "manifest.json").read_text())
        page = visit().open(site / "index.html")
        rows = all_rows(  # every row, one page at a time
            page,
            """rows => rows.map(r => ({page: r.dataset.page, link: r.cells[1].querySelector('a')?.getAttribute('href'),
                                      only: r.cells[1].querySelector('.index-only') !== null}))""",
        )
        assert len(rows) == sum(manifest["units"].values())
        linked = [r["link"] for r in rows if r["page"] == "1"]
        assert len(linked) == sum(manifest["pages"].values()) and all(linked)
        assert all((site / link).is_file() and link in manifest["files"] for link in linked), name
        assert all(r["only"] and r["link"] is None for r in rows if r["page"] == "0")


def matching(page) -> int:
    """The number of rows the filters match (``#count``: "<matching> of <total> units")."""
    return int(page.locator("#count").text_content().split()[0])


def test_sorting_and_filtering_change_the_visible_rows(tiny_run, visit):
    page = visit().open(sites(tiny_run)["tiny-rn"] / "index.html")
    total = int(page.locator("#count").text_content().split()[-2])
    assert total == 512 + 8 * 512 and page.locator("#units tbody tr").count() == PAGE_ROWS  # one page at a time
    page.select_option("#f-kind", "pair")
    assert set(visible(page, 0)) == {"pair"} and len(visible(page, 0)) == PAGE_ROWS
    assert page.locator("#count").text_content() == f"{8 * 512} of {total} units"
    every = sorted(float(e) for e in visible(page, 3))
    low, high = every[len(every) // 4], every[len(every) // 2]  # an entropy range holding about a quarter
    page.fill("#f-emin", str(low))
    page.fill("#f-emax", str(high))
    entropies = [float(e) for e in visible(page, 3)]
    assert entropies and all(low <= e <= high for e in entropies) and matching(page) < 8 * 512
    page.fill("#f-emin", "")
    page.fill("#f-emax", "")
    page.click("button[data-sort='entropy']")
    entropies = [float(e) for e in visible(page, 3)]
    assert entropies == sorted(entropies)
    page.click("#next")  # the next page goes on in the same order
    following = [float(e) for e in visible(page, 3)]
    assert following == sorted(following) and following[0] >= entropies[-1]
    assert page.locator("#position").text_content() == f"{PAGE_ROWS + 1}-{2 * PAGE_ROWS}"
    page.click("button[data-sort='entropy']")
    entropies = [float(e) for e in visible(page, 3)]
    assert entropies == sorted(entropies, reverse=True)
    assert page.locator("button[data-sort='entropy']").get_attribute("aria-sort") == "descending"
    assert page.locator("#position").text_content() == f"1-{PAGE_ROWS}" and page.locator("#previous").is_disabled()
    concept = visible(page, 4)[0]
    page.select_option("#f-top", concept)
    assert set(visible(page, 4)) == {concept} and set(visible(page, 0)) == {"pair"}
    page.select_option("#f-kind", "")
    page.select_option("#f-top", "")
    key = visible(page, 1)[0]
    page.fill("#f-search", key)
    texts = page.eval_on_selector_all("#units tbody tr:not([hidden])", "rows => rows.map(r => r.textContent)")
    assert key in visible(page, 1) and matching(page) == len(texts) < total and all(key in text for text in texts)
    page.fill("#f-search", "")
    assert matching(page) == total and len(visible(page, 0)) == PAGE_ROWS

    vit = visit().open(sites(tiny_run)["tiny-vit"] / "index.html")
    vit.select_option("#f-layer", "1")
    assert set(visible(vit, 2)) == {"1"} and set(visible(vit, 0)) == {"mlp"}


def test_links_between_related_units(tiny_run, visit):
    rn = sites(tiny_run)["tiny-rn"]
    page = visit().open(rn / "index.html")
    neuron = page.eval_on_selector_all("#units tbody tr[data-kind='neuron'][data-page='1'] a", "a => a[0].href")
    page.goto(neuron)
    pairs = page.locator("section.table", has_text="Its neuron-head pairs")
    assert pairs.locator("tbody tr").count() == 8  # one pair per head
    assert page.locator("section.table", has_text="Concept AUROC").locator("tbody tr").count() == 16
    vit = sites(tiny_run)["tiny-vit"]
    page.goto((vit / "index.html").as_uri())
    latent = page.eval_on_selector_all("#units tbody tr[data-kind='sae'][data-page='1'] a", "a => a[0].href")
    page.goto(latent)
    reads = page.locator("section.table", has_text="Residual dims the latent reads")
    assert reads.locator("tbody tr").count() == 3  # atlas.n_reads; block 0 writes the residual at block 1


MICLIP_SITE = "visual.blocks.{layer}.hook_mlp_out"


def test_miclip_results_show_on_the_pages_of_their_units(tiny_run, visit, tmp_path):
    """Hand-written MiCLIP tables in issue 13's format, for a ViT MLP unit with a page."""
    results = tiny_run / "results"
    manifest = json.loads((sites(tiny_run)["tiny-vit"] / "manifest.json").read_text())
    key = sorted(f for f in manifest["files"] if f.startswith("units/mlp/"))[0].split("/")[-1].removesuffix(".html")
    layer, unit = map(int, key.split("-"))
    folder = tmp_path / "miclip"
    folder.mkdir()
    (folder / "descriptions.tsv").write_text(
        "unit\tmethod\tseed\tvocabulary\trank\tconcept\tscore\n"
        f"{unit}\tmiclip\t0\tshapes\t1\tcircle\t0.61\n{unit}\tmiclip\t0\twords\t1\tsun\t0.42\n"
        f"{unit}\tmiclip\t1\tshapes\t1\tsquare\t0.5\n"
    )
    (folder / "interventions.tsv").write_text(
        "concept\tmethod\tseed\tintervention\tbeta\tn_images\taccuracy_before\taccuracy_after\tdelta_acc\n"
        "circle\tmiclip\t0\tscale\t0\t8\t0.75\t0.5\t-0.25\ncircle\tmiclip\t1\tscale\t0\t8\t0.75\t0.625\t-0.125\n"
    )
    (folder / "localisation.tsv").write_text(
        f"concept\tmethod\tseed\trank\tunit\tscore\ncircle\tmiclip\t0\t1\t{unit}\t0.9\n"
        f"circle\tmiclip\t1\t1\t{unit + 1}\t0.8\n"  # seed 1 chose another unit: its Delta Acc is not this one's
    )
    vit = "results/{}/tiny-vit"
    out = tmp_path / "atlas"
    build_atlas(
        model="tiny-vit",
        dataset="tiny-shapes",
        inputs={
            "data": str(results / "datasets/tiny-shapes/data"),
            "store": str(tiny_run / vit.format("activations") / "tiny-shapes.zarr"),
            "units": str(tiny_run / vit.format("selectivity") / "tiny-shapes/units.tsv"),
            **{f"miclip_{n}": [str(folder / f"{n}.tsv")] for n in ("descriptions", "interventions", "localisation")},
        },
        site=str(out),
        summary=str(tmp_path / "atlas.tsv"),
        atlas={
            "max_units": 6,
            "n_top_images": 4,
            "thumbnail_size": 32,
            "bins": 10,
            "n_reads": 3,
            "batch_tokens": 4096,
            "k": 5,
            "reduction": "mean",
        },
        sources={"sae": "tiny-shapes", "patching": None, "miclip": "tiny-shapes"},
        sae_sites=[],
        miclip_units=[{"site": MICLIP_SITE.format(layer=layer), "kind": "neurons"}],
    )
    v = visit()
    page = v.open(out / f"units/mlp/{key}.html")
    descriptions = page.locator("section.table", has_text="MiCLIP descriptions").locator("tbody tr")
    # Every seed's descriptions, each with how many seeds describe the unit by that concept.
    assert descriptions.all_text_contents() == [
        "shapes01circle0.611 of 2 seeds",
        "shapes11square0.51 of 2 seeds",
        "words01sun0.421 of 2 seeds",
    ]
    localised = page.locator("section.table", has_text="MiCLIP localisation").locator("tbody tr").all_text_contents()
    assert localised == ["circlemiclip1 of 2 seeds010.98scale 0: -0.250"]
    assert v.problems == []


def test_a_paper_scale_index_sorts_filters_and_pages(visit, tmp_path):
    """ViT-L/14's 24 x 1,024 MLP channels in one index (issue 23): every unit is in the page's data, the rows
    of one page are drawn."""
    n_layers, width = 24, 1024
    units = benchmark_module("atlas").synthetic_units(n_layers * width)
    (tmp_path / "index.html").write_text(render.index_html(units, "vit-l-14", [("dataset", "random weights")]))
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, tmp_path / name)
    v = visit()
    page = v.open(tmp_path / "index.html")
    assert page.locator("#units tbody tr").count() == PAGE_ROWS
    assert page.locator("#count").text_content() == f"{n_layers * width} of {n_layers * width} units"
    page.click("button[data-sort='entropy']")
    entropies = [float(e) for e in visible(page, 3)]
    assert entropies == sorted(entropies) and entropies[0] == float(render.number(min(u.entropy for u in units), 4))
    page.select_option("#f-layer", "23")
    assert matching(page) == width and set(visible(page, 2)) == {"23"}
    page.fill("#f-search", "23-1000")
    assert visible(page, 1) == ["23-1000"]
    assert v.problems == []


def test_index_rows_drawn_from_data_link_wrap_and_say_why_a_unit_has_no_page(visit, tmp_path):
    import numpy as np

    long_key = "visual.blocks.1.hook_resid_post-7"

    def latent(key, page, dead):
        return render.UnitPage(
            kind="sae",
            key=key,
            title="",
            layer="visual.blocks.1.hook_resid_post",
            entropy=float("nan") if dead else 1.0,
            affinity_F=np.full(16, np.nan) if dead else np.full(16, 1 / 16),
            hist_counts_B=np.zeros(4),
            hist_edges_B=np.zeros(5),
            images_K=np.arange(3),
            acts_K=np.ones(3),
            activation="max",
            page=page,
            dead=dead,
            note="</script><b>not markup</b>",
        )

    units = [latent(long_key, True, False), latent(long_key + "8", False, False), latent(long_key + "9", False, True)]
    (tmp_path / "index.html").write_text(render.index_html(units, "m", []))
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, tmp_path / name)
    v = visit()
    page = v.open(tmp_path / "index.html")
    cells = page.eval_on_selector_all(
        "#units tbody tr",
        """rows => rows.map(r => ({href: r.cells[1].querySelector('a')?.getAttribute('href') ?? null,
                                  title: r.cells[1].querySelector('.index-only')?.title ?? null,
                                  breaks: r.cells[1].querySelectorAll('wbr').length, text: r.cells[1].textContent,
                                  note: r.cells[7].textContent, bold: r.querySelector('b') !== null}))""",
    )
    assert [c["text"] for c in cells] == [u.key for u in units] and all(c["breaks"] == 3 for c in cells)
    assert cells[0]["href"] == f"units/sae/{long_key}.html" and cells[0]["title"] is None
    assert [c["title"] for c in cells[1:]] == [render.INDEX_ONLY, render.DEAD]
    assert cells[0]["note"] == "</script><b>not markup</b>" and not any(c["bold"] for c in cells)
    assert cells[2]["note"] == "dead (the same activation on every image)"
    assert v.problems == []
