"""The MiCLIP probe streamed into its zarr store equals the probe held in memory (clipmech.miclip.probe_store,
rule probe_miclip)."""

from __future__ import annotations

import numpy as np
import pytest

from clipmech.data import datasets
from clipmech.miclip import interventions, probe_store, units
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.stages.probe_miclip import load_probe, probe_miclip

RANDOM = ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None)
RANDOM_RN = ModelSpec(name="random-rn", architecture="clipmech-rn-tiny", pretrained=None)


def _prov(shape, n, batch):
    return probe_store.ProbeProvenance(
        model="m",
        site="visual.blocks.0.hook_resid_post",
        dataset_sha256="ab",
        n_images=n,
        shape=shape,
        batch_size=batch,
    )


@pytest.mark.parametrize("shape", [(5, 70), (70, 2, 3)])
def test_a_store_written_in_batches_reads_back_the_array_and_its_maps(tmp_path, shape):
    """Batches of 4 images of a transformer site (T = 1 + 2 x 2, 70 units: two unit chunks) or a ResNet stage
    read back exactly; the lazy maps of any held-out subset equal :func:`clipmech.miclip.units.neuron_maps`."""
    acts = np.random.default_rng(0).standard_normal((10, *shape)).astype(np.float32)
    store = tmp_path / "acts.zarr"
    probe_store.write_probe_store(store, _prov(shape, 10, 4), (acts[s : s + 4] for s in range(0, 10, 4)))
    read = probe_store.open_probe_store(store)
    np.testing.assert_array_equal(np.asarray(read), acts)
    heldout = np.array([1, 4, 5, 9])
    maps = units.NeuronMaps(read.isel(image=heldout), 1, (2, 2))
    whole = units.neuron_maps(acts[heldout], 1, (2, 2))
    assert maps.shape == whole.shape
    np.testing.assert_array_equal(maps[:, 3:67], whole[:, 3:67])
    np.testing.assert_array_equal(maps[1:3, 60:70], whole[1:3, 60:70])  # an image chunk across unit chunks
    np.testing.assert_array_equal(maps[3:9, :], whole[3:])


def test_a_non_finite_batch_is_not_published(tmp_path):
    acts = np.zeros((6, 5, 4), dtype=np.float32)
    acts[5, 2, 1] = np.inf
    store = tmp_path / "acts.zarr"
    with pytest.raises(ValueError, match="infinite"):
        probe_store.write_probe_store(store, _prov((5, 4), 6, 3), (acts[s : s + 3] for s in (0, 3)))
    assert not store.exists()


def test_a_store_of_fewer_images_than_announced_is_refused(tmp_path):
    acts = np.zeros((3, 5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="3 images written, 6 expected"):
        probe_store.write_probe_store(tmp_path / "acts.zarr", _prov((5, 4), 6, 3), iter([acts]))


@pytest.mark.parametrize("spec", [RANDOM, RANDOM_RN], ids=["vit", "rn"])
def test_the_streamed_probe_equals_the_probe_in_memory(tiny_dataset, tmp_path, spec):
    """Batches of 3 of the 10 images: the store holds the site activations of the whole pixel array, the
    probe the image-level activations and predictions computed from it in memory."""
    site = "visual.blocks.3.hook_resid_post" if spec is RANDOM_RN else "visual.blocks.1.hook_mlp_out"
    probe, acts = tmp_path / "probe.npz", tmp_path / "acts.zarr"
    probe_miclip(
        model=spec, reference=RANDOM, dataset_dir=str(tiny_dataset), site=site, probe=str(probe), acts=str(acts),
        holdout=0.3, seed=0, batch_size=3, device="cpu", threads=1,
    )  # fmt: skip
    clip, preprocess, tokenizer = loading.load(spec, "cpu")
    pixels = loading.preprocess_images(datasets.load(tiny_dataset).images, preprocess)
    site_acts = units.site_activations(clip, pixels, site, batch_size=3, device="cpu")
    np.testing.assert_array_equal(np.asarray(probe_store.open_probe_store(acts)), site_acts)
    texts = attribute_prompt_embeddings(clip, tokenizer, "cpu")
    with load_probe(probe) as npz:
        n_prefix = int(npz["n_prefix_tokens"])
        np.testing.assert_array_equal(npz["image_acts"], units.neuron_image_acts(site_acts, n_prefix))
        expected = interventions.predictions(clip, pixels, texts, batch_size=3, device="cpu")
        np.testing.assert_array_equal(npz["predictions"], expected)
        assert "site_acts" not in npz and str(npz["vocabulary"]) == "shapes"
        assert npz["reference_images"].shape[0] == 10
