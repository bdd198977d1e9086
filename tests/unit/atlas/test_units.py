"""Unit pages of the atlas (clipmech.atlas.units) and what links attaches to them, on hand-made activations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
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


def _identity_sae(tmp_path, rng):
    """An SAE reading all tokens of 12 images whose 2 latents are the 2 residual dims (positive, so each
    latent's value is its dim's); dim 0 is largest on the class token of every image. Returns the store, the
    tokens as stored (float16) and the feature counts."""
    acts_NTD = rng.uniform(0.1, 1.0, size=(12, 5, 2)).astype(np.float32)
    acts_NTD[:, 0, 0] = 50.0  # the class token: would tie every image at 50
    store = activations.open_store(write_site_store(tmp_path / "s.zarr", acts_NTD, SAE_SITE, 4))
    sae = TopKSAE(2, 2, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.eye(2))
    save_sae(tmp_path / "sae.pt", sae, {"site": SAE_SITE, "tokens": "all"})
    return store, acts_NTD.astype(np.float16).astype(np.float32), rng.integers(0, 2, size=(12, 16)).astype(float)


def test_sae_units_streamed_in_token_batches_equal_the_whole_array_computations(tmp_path):
    """Encoded 35 tokens (7 images) at a time, 12 images: the pages as from every image's latents at once."""
    store, acts_NTD, counts_NF = _identity_sae(tmp_path, np.random.default_rng(1))
    params = {**PARAMS, "batch_tokens": 35, "n_reads": 1}
    latents = units.sae_units(str(tmp_path / "sae.pt"), store, counts_NF, params)[1]
    image_Nn = acts_NTD[:, 1:].max(axis=1)  # the max over the patch tokens
    index_KU, values_KU = gather.top_images(image_Nn, 4)
    counts_UB, edges_UB = gather.histograms(image_Nn, 5)
    affinity_UF, entropy_U = gather.unit_selectivity(image_Nn, counts_NF, 3)
    np.testing.assert_array_equal(np.stack([u.images_K for u in latents], axis=1), index_KU)
    np.testing.assert_array_equal(np.stack([u.acts_K for u in latents], axis=1), values_KU)
    np.testing.assert_array_equal(np.stack([u.hist_counts_B for u in latents]), counts_UB)
    np.testing.assert_array_equal(np.stack([u.hist_edges_B for u in latents]), edges_UB)
    np.testing.assert_array_equal(np.stack([u.affinity_F for u in latents]), affinity_UF)
    np.testing.assert_array_equal([u.entropy for u in latents], entropy_U)


def test_an_sae_latent_page_reads_the_max_over_patch_tokens_and_names_it(tmp_path):
    """An SAE reading all tokens; latent 0 is the residual dim 0, largest on the class token of every image."""
    rng = np.random.default_rng(1)
    store, acts_NTD, counts_NF = _identity_sae(tmp_path, rng)
    site_name, latents, _, _ = units.sae_units(
        str(tmp_path / "sae.pt"), store, counts_NF, {**PARAMS, "batch_tokens": 10, "n_reads": 1}
    )
    patch_max_N = acts_NTD[:, 1:, 0].max(axis=1)
    assert site_name == SAE_SITE and not latents[0].dead
    np.testing.assert_array_equal(latents[0].acts_K, np.sort(patch_max_N)[::-1][:4])
    assert latents[0].activation == gather.ACTIVATIONS["sae"]
    # Its maps, read from the latents' top-k codes: the patch tokens of its top images.
    top = latents[0].images_K
    expected = gather.quantise_maps(acts_NTD[top, 1:, 0])
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


@pytest.mark.parametrize("chunk_elements", [gather.CHUNK_ELEMENTS, 3 * 17 * (512 + 8)])
def test_resnet_units_equal_the_whole_array_computations(tmp_path, tiny_dataset, monkeypatch, chunk_elements):
    """Attention-pool neurons and pairs read chunk by chunk (10 images: one chunk, or chunks of 3 images of
    17 tokens x (512 channels + 8 heads)), chunks sized by the tokens read, maps from the pages' images only:
    as from all the store's tokens at once."""
    sized_by, image_chunks = [], gather.image_chunks

    def chunks(n_images, per_image):
        sized_by.append(per_image)
        return image_chunks(n_images, per_image, chunk_elements)

    monkeypatch.setattr(gather, "image_chunks", chunks)
    from clipmech.data import datasets, shapes
    from clipmech.decomposition import pool
    from clipmech.models.loading import ModelSpec
    from clipmech.stores import attnpool as pool_store
    from clipmech.stores import attnpool_extraction
    from clipmech.stores.activation_extraction import reduce_tokens

    path = attnpool_extraction.extract_attnpool(
        ModelSpec("rand-rn", "clipmech-rn-tiny", None), tiny_dataset, tmp_path / "pool.zarr", batch_size=5,
        device="cpu", code="t",
    )  # fmt: skip
    ds = pool_store.open_store(path)
    weights = pool_store.store_weights(ds)
    x_NTC, alpha_NHT = np.asarray(ds["x"].values, np.float32), np.asarray(ds["alpha"].values, np.float32)
    n_images, _, n_neurons = x_NTC.shape
    (tmp_path / "pairs.tsv").write_text(
        "head\tneuron\trank\tmean_norm\tu_norm\ts_mean\tcos_pc_u\n0\t1\t1\t2.0\t1.0\t0.5\t\n"
    )
    (tmp_path / "words.tsv").write_text("head\tneuron\twords\tcos_sparse_u\n0\t1\tred (0.5), blue (0.25)\t0.9\n")
    data = datasets.load(tiny_dataset)
    counts_NF = shapes.feature_counts(data.objects, data.n_images)
    params = {"k": 3, "n_top_images": 4, "bins": 5, "max_units": 3}
    neurons, pairs, table = units.resnet_units(
        str(path), str(tmp_path / "pairs.tsv"), str(tmp_path / "words.tsv"), counts_NF, params
    )
    raw_NTC = pool_store.neuron_activations(x_NTC, weights).astype(np.float32)
    neuron_NU = reduce_tokens(torch.from_numpy(raw_NTC[:, None]), gather.NEURON_REDUCTION, 1)[:, 0].numpy()
    pair_NU = pool.pair_scalars(x_NTC.astype(np.float64), alpha_NHT.astype(np.float64)).reshape(n_images, -1)
    for pages, acts_NU in ((neurons, neuron_NU), (pairs, pair_NU)):
        index_KU, values_KU = gather.top_images(acts_NU, 4)
        counts_UB, edges_UB = gather.histograms(acts_NU, 5)
        np.testing.assert_array_equal(np.stack([u.images_K for u in pages], axis=1), index_KU)
        np.testing.assert_array_equal(np.stack([u.acts_K for u in pages], axis=1), values_KU)
        np.testing.assert_array_equal(np.stack([u.hist_counts_B for u in pages]), counts_UB)
        np.testing.assert_array_equal(np.stack([u.hist_edges_B for u in pages]), edges_UB)
        assert sum(u.page for u in pages) == 3
    for u in (u for u in neurons if u.page):
        np.testing.assert_array_equal(u.maps_K, gather.quantise_maps(raw_NTC[u.images_K, 1:, int(u.key)]))
    for q, u in ((q, u) for q, u in enumerate(pairs) if u.page):
        head, neuron = divmod(q, n_neurons)
        expected = gather.pair_token_maps(x_NTC[u.images_K], alpha_NHT[u.images_K], head, neuron)
        np.testing.assert_array_equal(u.maps_K, gather.quantise_maps(expected))
    assert pairs[1].note == "red, blue" and len(table) == 1
    read_per_image = x_NTC.shape[1] * (n_neurons + alpha_NHT.shape[1])  # x and alpha of one image
    assert sized_by == [max(n_neurons, read_per_image), max(alpha_NHT.shape[1] * n_neurons, read_per_image)]
