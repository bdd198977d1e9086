"""Unit pages of the atlas (clipmech.atlas.units) and what links attaches to them, on hand-made activations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from toys import write_site_store

from clipmech.atlas import gather, links, site, units
from clipmech.sae.model import TopKSAE, save_sae
from clipmech.stores import activations

SAE_SITE = "visual.blocks.1.hook_resid_post"
PARAMS = {"k": 3, "n_top_images": 4, "bins": 5, "max_units": None}


def _latent_pages(rng):
    """Pages of 4 SAE latents on 12 images; latent 2 never fires (a dead latent)."""
    acts_NU = np.maximum(rng.standard_normal((12, 4)), 0.0).astype(np.float32)
    acts_NU[:, 2] = 0.0
    counts_NF = rng.integers(0, 2, size=(12, 16)).astype(float)
    counts_NF[:, 0] += 1  # every image has an object
    return units.unit_pages(
        kind="sae",
        keys=[f"{SAE_SITE}-{i}" for i in range(4)],
        titles=[f"latent {i}" for i in range(4)],
        layers=[SAE_SITE] * 4,
        summary=units.summarise(lambda start, stop: acts_NU[start:stop], 12, 4, PARAMS),
        activation="max over the patch tokens",
        counts_NF=counts_NF,
        params=PARAMS,
    )


def test_a_dead_latent_gets_no_page_and_no_miclip_description(tmp_path):
    pages = units.Pages()
    latents = _latent_pages(np.random.default_rng(0))
    pages.add(latents)
    assert [u.dead for u in latents] == [False, False, True, False]
    assert [u.page for u in latents] == [True, True, False, True]  # every unit has a page, but the dead one
    assert np.isnan(latents[2].entropy) and latents[2].top_concept == ""
    # MiCLIP tables as today's evaluation wrote them: a description and a localisation of every latent
    folder = tmp_path / "miclip"
    folder.mkdir()
    (folder / "descriptions.tsv").write_text(
        "unit\tmethod\tseed\tvocabulary\trank\tconcept\tscore\n"
        + "".join(f"{i}\tmiclip\t0\tshapes\t1\tred\t0.0\n" for i in range(4))
    )
    (folder / "localisation.tsv").write_text(
        "concept\tmethod\tseed\trank\tunit\tscore\n" + "".join(f"red\tmiclip\t0\t{i + 1}\t{i}\t0.0\n" for i in range(4))
    )
    (folder / "interventions.tsv").write_text(
        "concept\tmethod\tseed\tintervention\tbeta\tn_images\taccuracy_before\taccuracy_after\tdelta_acc\n"
    )
    inputs = {f"miclip_{n}": [str(folder / f"{n}.tsv")] for n in ("descriptions", "interventions", "localisation")}
    links.miclip(pages, [{"site": SAE_SITE, "kind": "sae"}], [SAE_SITE], inputs, "shapes")
    titles = [[t.title for t in u.tables] for u in latents]
    assert titles[2] == [] and all(any(t.startswith("MiCLIP descriptions") for t in titles[i]) for i in (0, 1, 3))
    assert pages.link("sae", latents[2].key, "2").dead  # a link to it says why it is text

    manifest = site.write_site(
        tmp_path / "site",
        model="m",
        units=latents,
        images_NHW3=np.zeros((12, 8, 8, 3), dtype=np.uint8),
        dataset="shapes: all 12 images",
        thumbnail_size=4,
        facts=[],
    )
    assert manifest["pages"] == {"sae": 3} and manifest["dead"] == {"sae": 1}
    assert f"units/sae/{latents[2].key}.html" not in manifest["files"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "<dt>dead units</dt><dd>1 (1 sae): the same activation on every image, no page</dd>" in index
    payload = json.loads(index.split('<script type="application/json" id="rows">')[1].split("</script>")[0])
    assert [row[payload["fields"].index("dead")] for row in payload["rows"]] == [0, 0, 1, 0]
    summary = site.summary_table(manifest, tmp_path / "site")
    assert summary[["kind", "units", "pages", "dead"]].values.tolist() == [["sae", 4, 3, 1]]


def test_an_sae_latent_page_reads_the_max_over_patch_tokens_and_names_it(tmp_path):
    """An SAE reading all tokens; latent 0 is the residual dim 0, largest on the class token of every image."""
    rng = np.random.default_rng(1)
    acts_NTD = rng.uniform(0.1, 1.0, size=(12, 5, 2)).astype(np.float32)
    acts_NTD[:, 0, 0] = 50.0  # the class token: would tie every image at 50
    store = activations.open_store(write_site_store(tmp_path / "s.zarr", acts_NTD, SAE_SITE, 4))
    sae = TopKSAE(2, 2, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.eye(2))
    save_sae(tmp_path / "sae.pt", sae, {"site": SAE_SITE, "tokens": "all"})
    counts_NF = rng.integers(0, 2, size=(12, 16)).astype(float)
    site_name, latents, _, _ = units.sae_units(
        str(tmp_path / "sae.pt"), store, counts_NF, {**PARAMS, "batch_tokens": 10, "n_reads": 1}
    )
    patch_max_N = acts_NTD[:, 1:, 0].astype(np.float16).astype(np.float32).max(axis=1)
    assert site_name == SAE_SITE and not latents[0].dead
    np.testing.assert_array_equal(latents[0].acts_K, np.sort(patch_max_N)[::-1][:4])
    assert latents[0].activation == gather.ACTIVATIONS["sae"]
    # Its maps, read from the latents' top-k codes: the patch tokens of its top images.
    top = latents[0].images_K
    expected = gather.quantise_maps(acts_NTD[top, 1:, 0].astype(np.float16).astype(np.float32))
    assert latents[0].page and latents[0].grid == (1, 4)
    np.testing.assert_array_equal(latents[0].maps_K, expected.reshape(top.size, -1))
    latents_tsv, metrics_json = tmp_path / "latents.tsv", tmp_path / "metrics.json"
    pd.DataFrame(
        {"latent": [0, 1], "frequency": [0.5, 0.25], "top_concept": ["red", ""], "auroc_image": [0.9, 0.6], "ap": 0.5}
    ).to_csv(latents_tsv, sep="\t", index=False)
    metrics_json.write_text('{"split": "holdout", "n_holdout_images": 3, "n_split_images": 3}')
    pages = units.Pages()
    pages.add(latents)
    links.sae_alignment(pages, latents, str(latents_tsv), str(metrics_json), "toy-shapes")
    assert latents[0].note == "frequency 0.5"
    assert latents[0].tables[0].title.startswith("SAE concept alignment on toy-shapes (its 3 held-out images;")
