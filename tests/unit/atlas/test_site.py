"""The atlas's page sections, HTML and site writer on hand-made units and hand-written MiCLIP tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clipmech.atlas import render, sections, site

DESCRIPTIONS = """unit\tmethod\tseed\tvocabulary\trank\tconcept\tscore
3\tmiclip\t0\twords\t1\tsun\t0.41
3\tmiclip\t0\tshapes\t2\tred\t0.30
3\tmiclip\t0\tshapes\t1\tcircle\t0.52
3\tmiclip\t1\tshapes\t1\tsquare\t0.50
3\tclip-dissect\t0\tshapes\t1\tblue\t0.90
4\tmiclip\t0\tshapes\t1\tgreen\t0.60
"""
INTERVENTIONS = """concept\tmethod\tseed\tintervention\tbeta\tn_images\taccuracy_before\taccuracy_after\tdelta_acc
circle\tmiclip\t0\tscale\t0\t20\t0.9\t0.5\t-0.4
circle\tmiclip\t1\tscale\t0\t20\t0.9\t0.7\t-0.2
circle\tmiclip\t0\tscale\t2\t20\t0.9\t0.95\t0.05
circle\tmiclip\t2\tscale\t0\t20\t0.9\t0.6\t-30.0
circle\trandom\t0\tscale\t0\t20\t0.9\t0.9\t0.0
red\tmiclip\t2\tscale\t0\t12\t0.8\t0.7\t-10.0
"""
LOCALISATION = """concept\tmethod\tseed\trank\tunit\tscore
circle\tmiclip\t0\t2\t3\t0.7
circle\tmiclip\t1\t1\t3\t0.8
circle\tmiclip\t2\t1\t5\t0.9
circle\trandom\t0\t4\t3\t0.1
red\tmiclip\t0\t1\t4\t0.6
red\tmiclip\t2\t1\t5\t0.5
"""


def table(tmp_path, name, text):
    path = tmp_path / f"{name}.tsv"
    path.write_text(text)
    return pd.read_csv(path, sep="\t")


def test_miclip_descriptions_show_every_seed_with_its_agreement(tmp_path):
    descriptions = table(tmp_path, "descriptions", DESCRIPTIONS)
    out = sections.miclip_descriptions(descriptions, 3, "shapes")
    assert out.rows == (
        ("shapes", 0, 1, "circle", 0.52, "1 of 2 seeds"),
        ("shapes", 0, 2, "red", 0.30, "1 of 2 seeds"),
        ("shapes", 1, 1, "square", 0.50, "1 of 2 seeds"),
        ("words", 0, 1, "sun", 0.41, "1 of 2 seeds"),
    )
    assert out.title == "MiCLIP descriptions on shapes, per encoder seed (2 seeds)"
    assert sections.miclip_descriptions(descriptions, 9, "shapes") is None
    agreeing = pd.concat([descriptions, pd.DataFrame([descriptions.iloc[2]]).assign(seed=1, rank=2)])
    assert sections.miclip_descriptions(agreeing, 3, "shapes").rows[0][-1] == "2 of 2 seeds"


def test_miclip_localisation_shows_each_seed_that_chose_the_unit_with_that_seeds_delta_acc(tmp_path):
    localisation = table(tmp_path, "localisation", LOCALISATION)
    interventions = table(tmp_path, "interventions", INTERVENTIONS)
    out = sections.miclip_localisation(localisation, interventions, 3, "shapes")
    assert out.title.startswith("MiCLIP localisation on shapes:")
    assert out.columns[2:4] == ("chosen by", "seed")
    # Seed 2 localised circle to other units: its Delta Acc (-30) never touched unit 3 and is not shown.
    assert out.rows == (
        ("circle", "miclip", "2 of 3 seeds", 0, 2, 0.7, 20, "scale 0: -0.400; scale 2: +0.050"),
        ("circle", "miclip", "2 of 3 seeds", 1, 1, 0.8, 20, "scale 0: -0.200"),
        ("circle", "random", "1 of 1 seeds", 0, 4, 0.1, 20, "scale 0: +0.000"),
    )
    # Chosen by seed 0 only, which ran no intervention on red: seed 2's (-10) is another unit set's.
    only_seed_0 = sections.miclip_localisation(localisation, interventions, 4, "shapes")
    assert only_seed_0.rows == (("red", "miclip", "1 of 3 seeds", 0, 1, 0.6, "", ""),)
    assert sections.miclip_localisation(localisation, interventions, 9, "shapes") is None


def test_sections_name_their_dataset_split_and_scope():
    auroc = pd.DataFrame(
        {
            "tower": "visual",
            "site": ["visual.blocks.3.hook_resid_post", "visual.attnpool.hook_x"],
            "layer": [3, 4],
            "unit": 7,
            "concept": "red",
            "concept_type": "color",
            "auroc": [0.9, 0.8],
            "n_pos": 30,
            "n_neg": 90,
        }
    )
    out = sections.concept_auroc(auroc, {"visual.blocks.3.hook_resid_post": "last stage"}, 7, "pairs-set")
    assert out.title.startswith("Concept AUROC on pairs-set (all 120 images;") and "image-level activation" in out.title
    recovery = pd.DataFrame(
        {
            "family": ["pool_head", "pool_neuron"],
            "unit": [None, 7],
            "head": [2, None],
            "corruption": "color",
            "direction": "denoising",
            "n_pairs": 40,
            **{f"{m}{end}": 0.5 for m in ("recovery", "delta_logit") for end in ("", "_low", "_high")},
        }
    )
    head = sections.recovery(recovery, "pool_head", "pairs-set", head=2, pair="7-2")
    assert "the whole head" in head.title and "not pair 7-2 alone" in head.title
    assert "on the minimal pairs of pairs-set" in head.title and head.rows[0][2] == 40
    channel = sections.recovery(recovery, "pool_neuron", "pairs-set", unit=7)
    assert channel.title.startswith("Patching effects of pool_neuron channel 7, on the minimal pairs of pairs-set")
    latents = pd.DataFrame(
        {"latent": [0], "frequency": [0.01], "top_concept": ["red"], "auroc_image": [0.9], "ap": [0.7]}
    ).set_index("latent")
    metrics = {"split": "holdout", "n_holdout_images": 50, "n_split_images": 50}
    sae = sections.sae_alignment(latents, metrics, 0, "shapes")
    assert sae.title.startswith("SAE concept alignment on shapes (its 50 held-out images;")
    assert sae.rows[0] == ("firing frequency (tokens of the 50 held-out images)", 0.01)
    everything = sections.sae_alignment(latents, {**metrics, "split": "all", "n_split_images": 500}, 0, "shapes")
    assert "(all 500 images;" in everything.title
    assert sections.sae_alignment(latents, metrics, 1, "shapes") is None


def test_omp_words_parse_the_words_column():
    out = sections.omp_words("also (-1.11), very (+0.23), new york (+1.33)")
    assert out.rows == (("also", -1.11), ("very", 0.23), ("new york", 1.33))
    assert sections.omp_words(float("nan")) is None


def unit(kind, key, entropy, page=True, images=(0, 1)):
    rng = np.random.default_rng(len(key))
    affinity = rng.dirichlet(np.ones(16))
    return render.UnitPage(
        kind=kind,
        key=key,
        title=f"<b>{kind} {key}</b>",
        layer="0",
        entropy=entropy,
        affinity_F=affinity,
        hist_counts_B=np.array([1, 0, 2]),
        hist_edges_B=np.array([0.0, 1.0, 2.0, 3.0]),
        images_K=np.array(images),
        acts_K=np.array([2.5, 0.5]),
        activation="mean over the patch tokens",
        maps_K=np.array([[0, 255, 3, 4], [1, 2, 3, 4]], dtype=np.uint8),
        grid=(2, 2),
        tables=[render.Table("links", ("unit",), ((render.Link("x", "mlp", "0-2", False),),))],
        page=page,
    )


def test_pages_escape_data_and_reference_only_site_files():
    html = render.unit_page_html(unit("mlp", "0-1", 1.5), "m<odel>", "shapes: all 3 images")
    assert "<b>mlp" not in html and "&lt;b&gt;mlp 0-1&lt;/b&gt;" in html and "m&lt;odel&gt;" in html
    assert 'src="../../images/0.png"' in html and 'href="../../atlas.css"' in html
    assert '"grid":[2,2]' in html and "http" not in html.replace("https://", "")  # no external reference
    assert 'class="index-only"' in html  # a link to a unit without a page is text
    for section in ("Top-activating images", "Activation histogram"):
        assert f"<h2>{section} (shapes: all 3 images)</h2>" in html
    assert "<dt>image-level activation</dt><dd>mean over the patch tokens</dd>" in html


def test_site_is_written_whole_and_replaces_a_partial_one(tmp_path):
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    out = tmp_path / "atlas" / "m"
    (tmp_path / "atlas" / "m.partial" / "junk").mkdir(parents=True)  # left by a killed job
    units = [unit("mlp", "0-1", 1.0), unit("mlp", "0-2", 2.0, page=False, images=(2, 1))]
    manifest = site.write_site(
        out, model="m", units=units, images_NHW3=images, dataset="d", thumbnail_size=4, facts=[("a", "b")]
    )
    assert not (tmp_path / "atlas" / "m.partial").exists()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0.png", "1.png"]  # only shown images
    assert (out / "units/mlp/0-1.html").is_file() and not (out / "units/mlp/0-2.html").exists()
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["units"] == {"mlp": 2} and manifest["pages"] == {"mlp": 1}
    assert set(manifest["files"]) == {
        "atlas.css",
        "atlas.js",
        "images/0.png",
        "images/1.png",
        "index.html",
        "units/mlp/0-1.html",
    }
    rows = index_rows((out / "index.html").read_text())
    assert [(r["unit"], r["page"], r["dead"]) for r in rows] == [("0-1", 1, 0), ("0-2", 0, 0)]
    first = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    again = site.write_site(
        out, model="m", units=units, images_NHW3=images, dataset="d", thumbnail_size=4, facts=[("a", "b")]
    )
    assert {name: entry["sha256"] for name, entry in again["files"].items()} == first  # same input, same bytes


def test_site_refuses_repeated_addresses_and_unknown_images(tmp_path):
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="share addresses: units/mlp/0-1.html"):
        site.write_site(
            tmp_path / "s",
            model="m",
            units=[unit("mlp", "0-1", 1.0)] * 2,
            images_NHW3=images,
            dataset="d",
            thumbnail_size=4,
            facts=[],
        )
    with pytest.raises(ValueError, match="outside 0..1"):
        site.write_site(
            tmp_path / "s",
            model="m",
            units=[unit("mlp", "0-1", 1.0, images=(0, 5))],
            images_NHW3=images,
            dataset="d",
            thumbnail_size=4,
            facts=[],
        )
    assert not (tmp_path / "s").exists()


def test_pages_start_without_heatmaps_and_name_a_negative_top_activation():
    page = unit("sae", "visual.blocks.1.hook_resid_post-7", 1.5)
    html = render.unit_page_html(page, "m", "shapes: all 3 images")
    assert '<input type="checkbox" id="overlay">' in html  # heatmaps off: they cover 64 px thumbnails
    assert html.count('class="heat" data-map=') == 2 and html.count("></canvas>") == html.count(" hidden></canvas>")
    assert "<dt>highest activation</dt><dd>2.5</dd>" in html
    page.acts_K = np.array([-0.25, -0.5])
    html = render.unit_page_html(page, "m", "shapes: all 3 images")
    assert "<dt>least negative activation (negative on every image)</dt><dd>-0.25</dd>" in html
    svg = render.histogram_svg(np.array([1, 0, 2]), np.array([-1.5, -1.0, -0.5, 0.0]), np.array([-0.25]))
    assert ">2 images</text>" in svg and ">-1.5</text>" in svg and ">activation</text>" in svg and ">0</text>" in svg


def index_rows(html: str) -> list[dict]:
    """The rows of an index page: its JSON script ``#rows`` as one dict per unit."""
    payload = json.loads(html.split('<script type="application/json" id="rows">')[1].split("</script>")[0])
    return [dict(zip(payload["fields"], row)) for row in payload["rows"]]


def test_index_rows_are_json_data_safe_in_a_script():
    units = [unit("mlp", "0-1", 1.0), unit("mlp", "0-2", float("nan"), page=False)]
    units[1].note = "</script><b>x</b>"
    units[1].dead = True
    rows = index_rows(render.index_html(units, "m", []))
    assert rows[0] == dict(zip(render.ROW_FIELDS, render.index_rows(units)[0]))
    assert rows[1]["note"] == "dead (the same activation on every image)" and rows[1]["entropy"] == ""
    units[1].dead = False
    html = render.index_html(units, "m", [])
    assert "</script><b>" not in html and index_rows(html)[1]["note"] == "</script><b>x</b>"


def test_index_names_its_columns():
    long_key = "visual.blocks.1.hook_resid_post-7"
    units = [unit("sae", long_key, 1.0), unit("sae", "visual.blocks.1.hook_resid_post-8", 2.0, page=False)]
    index = render.index_html(units, "m", [])
    assert [(r["unit"], r["layer"], r["page"]) for r in index_rows(index)] == [
        (long_key, "0", 1),
        ("visual.blocks.1.hook_resid_post-8", "0", 0),
    ]
    assert ">highest activation</button>" in index and ">max activation<" not in index
    assert "<dt>dead units</dt><dd>0: the same activation on every image, no page</dd>" in index
