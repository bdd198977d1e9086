import numpy as np
import pytest
import torch
from toys import die_on_region_write, record_region_writes

from clipmech.data import datasets, shapes
from clipmech.hooks.sites import hooked
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.models.towers import tower
from clipmech.stores import activation_extraction, activations, base

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)
CODE = "test-code"


def _checkpoint(tmp_path, tiny_vit):
    model, _ = tiny_vit
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return ModelSpec("tiny", "clipmech-vit-tiny", str(path))


def test_store_layout_and_provenance(tmp_path, tiny_dataset, tiny_vit):
    spec = _checkpoint(tmp_path, tiny_vit)
    store = activation_extraction.extract(
        spec, tiny_dataset, tmp_path / "a.zarr", batch_size=4, device="cpu", code=CODE
    )
    ds = activations.open_store(store)
    assert ds["mean"].dims == ("image", "layer", "neuron") and ds["mean"].shape == (10, 2, 64)
    assert ds["tokens"].shape == (10, 2, 65, 64) and ds["tokens"].dtype == np.float16
    assert ds["mean"].dtype == np.float32
    assert ds["tokens"].encoding["chunks"] == (4, 1, 65, 64)
    np.testing.assert_allclose(np.linalg.norm(ds["embedding"].values, axis=1), 1.0, rtol=1e-5)
    prov = activation_extraction.StoreProvenance.from_attrs(ds.attrs)
    assert prov.weights == "sha256:" + loading.file_sha256(spec.pretrained)
    assert prov.dataset_sha256 and prov.layers == (0, 1)
    # Reductions agree with the stored tokens (to float16 precision).
    tokens = ds["tokens"].values.astype(np.float32)
    np.testing.assert_allclose(ds["cls"].values, tokens[:, :, 0], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(ds["mean"].values, tokens[:, :, 1:].mean(2), rtol=2e-3, atol=2e-3)
    assert not base.partial_path(store).exists() and not base.progress_path(store).exists()
    with pytest.raises(FileExistsError):
        activation_extraction.extract(spec, tiny_dataset, store, batch_size=4, device="cpu", code=CODE)


def test_killed_and_resumed_equals_uninterrupted(tmp_path, tiny_dataset, monkeypatch):
    reference = activations.open_store(
        activation_extraction.extract(
            RANDOM, tiny_dataset, tmp_path / "ref.zarr", batch_size=3, device="cpu", code=CODE
        )
    )
    target = tmp_path / "resumed.zarr"
    die_on_region_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        activation_extraction.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    assert not target.exists() and base.partial_path(target).exists()
    with pytest.raises(FileNotFoundError, match="partial store exists"):
        activations.open_store(target)
    assert '"images_complete": 6' in base.progress_path(target).read_text()

    written = record_region_writes(monkeypatch)
    activation_extraction.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    assert written == [{"image": slice(6, 9)}, {"image": slice(9, 10)}]  # resumed after the last complete batch
    resumed = activations.open_store(target)
    for name in ("mean", "max", "cls", "tokens", "embedding"):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values)


def test_changed_provenance_restarts(tmp_path, tiny_dataset, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    die_on_region_write(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        activation_extraction.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    monkeypatch.undo()
    activation_extraction.extract(RANDOM, tiny_dataset, target, batch_size=5, device="cpu", code=CODE)
    assert "batch_size differ" in caplog.text
    assert activations.open_store(target)["mean"].encoding["chunks"] == (5, 1, 64)


def test_bad_reduction(tmp_path, tiny_dataset):
    with pytest.raises(ValueError, match="valid reductions"):
        activation_extraction.extract(RANDOM, tiny_dataset, tmp_path / "x.zarr", reductions=("median",), code=CODE)


def test_only_text_sites_load_the_tokenizer(tmp_path, tiny_dataset, monkeypatch):
    """Vision sites run without a tokenizer (SigLIP's needs Hugging Face files; offline they may be missing)."""

    def unavailable(spec):
        raise FileNotFoundError(f"no tokenizer files for {spec.name}")

    monkeypatch.setattr(loading, "load_tokenizer", unavailable)
    store = activation_extraction.extract(
        RANDOM, tiny_dataset, tmp_path / "v.zarr", save_tokens=False, batch_size=5, device="cpu", code=CODE
    )
    assert activations.open_store(store)["mean"].shape == (10, 2, 64)
    sites = ("visual.blocks.*.hook_mlp_out", "text.blocks.0.hook_resid_post")
    with pytest.raises(FileNotFoundError, match="no tokenizer files for rand"):
        activation_extraction.extract(RANDOM, tiny_dataset, tmp_path / "t.zarr", sites=sites, device="cpu", code=CODE)


def _mlp_outputs_without_hooks(model, pixels):
    """(N, L, T, D) MLP outputs of every vision block, by walking open_clip's VisionTransformer by hand."""
    visual = model.visual
    x = visual._embeds(pixels)
    outputs = []
    for block in visual.transformer.resblocks:
        x = x + block.ls_1(block.attention(q_x=block.ln_1(x)))
        outputs.append(block.mlp(block.ln_2(x)))
        x = x + block.ls_2(outputs[-1])
    return torch.stack(outputs, dim=1)


def test_default_store_equals_reference_arithmetic(tmp_path, tiny_dataset, tiny_vit):
    spec = _checkpoint(tmp_path, tiny_vit)
    store = activation_extraction.extract(
        spec, tiny_dataset, tmp_path / "a.zarr", batch_size=4, device="cpu", code=CODE
    )
    ds = activations.open_store(store)
    sites = activation_extraction.StoreProvenance.from_attrs(ds.attrs).sites
    assert sites == ("visual.blocks.0.hook_mlp_out", "visual.blocks.1.hook_mlp_out")
    assert set(ds.data_vars) == {"mean", "max", "cls", "tokens", "embedding"}
    model, preprocess = loading.load_model(spec, "cpu")
    pixels = loading.preprocess_images(datasets.load(tiny_dataset).images[:], preprocess)
    with torch.inference_mode():
        acts_NLTD = _mlp_outputs_without_hooks(model, pixels)
        embedding_NE = model.encode_image(pixels, normalize=True)
    np.testing.assert_allclose(ds["cls"].values, acts_NLTD[:, :, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds["mean"].values, acts_NLTD[:, :, 1:].mean(2).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds["max"].values, acts_NLTD[:, :, 1:].amax(2).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds["tokens"].values.astype(np.float32), acts_NLTD.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ds["embedding"].values, embedding_NE.numpy(), rtol=1e-5, atol=1e-6)


def test_extra_sites_equal_hooked_capture(tmp_path, tiny_dataset, tiny_vit):
    spec = _checkpoint(tmp_path, tiny_vit)
    sites = (
        "visual.blocks.*.hook_mlp_out",
        "visual.blocks.-1.hook_resid_post",
        "visual.blocks.0.hook_resid_post",
        "text.blocks.*.mlp.hook_post",
    )
    store = activation_extraction.extract(
        spec, tiny_dataset, tmp_path / "s.zarr", sites=sites, batch_size=4, device="cpu", code=CODE
    )
    ds = activations.open_store(store)
    names = [
        "visual.blocks.0.hook_resid_post",
        "visual.blocks.1.hook_resid_post",
        "text.blocks.0.mlp.hook_post",
        "text.blocks.1.mlp.hook_post",
    ]
    assert activation_extraction.StoreProvenance.from_attrs(ds.attrs).sites == (
        "visual.blocks.0.hook_mlp_out",
        "visual.blocks.1.hook_mlp_out",
        *names,
    )
    resid = ds["visual_resid_post"]
    assert resid.dims == ("image", "visual_resid_post_layer", "visual_resid_post_token", "visual_resid_post_unit")
    assert resid.shape == (10, 2, 65, 64) and resid.dtype == np.float16 and resid.encoding["chunks"] == (4, 1, 65, 64)
    assert list(resid["visual_resid_post_layer"].values) == [0, 1]
    model, preprocess, tokenizer = loading.load(spec, "cpu")
    data = datasets.load(tiny_dataset)
    captions = activation_extraction.image_captions(data)
    assert captions[0] == shapes.caption(data.objects[data.objects["image_id"] == 0].to_dict("records"))
    with torch.inference_mode(), hooked(model, capture=names) as cache:
        model.encode_image(loading.preprocess_images(data.images[:], preprocess))
        model.encode_text(tokenizer(captions))
    for var, var_names in (("visual_resid_post", names[:2]), ("text_mlp_post", names[2:])):
        expected = torch.stack([cache[name] for name in var_names], dim=1).to(torch.float16).numpy()
        np.testing.assert_array_equal(ds[var].values, expected)
        for layer, name in enumerate(var_names):  # by site name: the variable at the site's layer
            np.testing.assert_array_equal(activations.site_activations(ds, name).values, expected[:, layer])
    np.testing.assert_array_equal(
        activations.site_activations(ds, "visual.blocks.1.hook_mlp_out").values, ds["tokens"].values[:, 1]
    )
    with pytest.raises(ValueError, match="not in the activation store.*visual.blocks.0.hook_mlp_out"):
        activations.site_activations(ds, "visual.blocks.0.hook_resid_pre")
    assert ds["text_mlp_post"].shape[2:] == (tower(model, "text").n_tokens, 256)  # the full context
    np.testing.assert_array_equal(
        ds["tokens"].values,
        activations.open_store(
            activation_extraction.extract(
                spec, tiny_dataset, tmp_path / "d.zarr", batch_size=4, device="cpu", code=CODE
            )
        )["tokens"].values,
    )


def test_bad_sites(tmp_path, tiny_dataset, tiny_vit):
    model, _ = tiny_vit
    with pytest.raises(ValueError, match=r"lack 'visual.blocks.\*.hook_mlp_out'"):
        activation_extraction.plan_sites(model, ["visual.blocks.0.hook_resid_post"], None)
    with pytest.raises(ValueError, match="cannot go into an activation store.*hook_resid_post"):
        activation_extraction.plan_sites(model, ["visual.blocks.*.hook_mlp_out", "visual.blocks.0.attn.hook_z"], None)
    with pytest.raises(ValueError, match="unknown site 'visual.blocks.0.hook_nope'"):
        activation_extraction.plan_sites(model, ["visual.blocks.*.hook_mlp_out", "visual.blocks.0.hook_nope"], None)
    with pytest.raises(ValueError, match="unknown tower 'audio'"):
        activation_extraction.plan_sites(model, ["visual.blocks.*.hook_mlp_out", "audio.blocks.*.hook_mlp_out"], None)
    plan = activation_extraction.plan_sites(
        model, ["visual.blocks.*.hook_mlp_out", "visual.blocks.*.hook_resid_pre"], [1]
    )
    assert plan.layers == (1,) and plan.extras == {"visual_resid_pre": ("visual.blocks.1.hook_resid_pre",)}


def test_sites_change_restarts(tmp_path, tiny_dataset, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    die_on_region_write(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        activation_extraction.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    monkeypatch.undo()
    sites = ("visual.blocks.*.hook_mlp_out", "visual.blocks.0.hook_resid_pre")
    activation_extraction.extract(RANDOM, tiny_dataset, target, sites=sites, batch_size=3, device="cpu", code=CODE)
    assert "sites differ" in caplog.text
    assert "visual_resid_pre" in activations.open_store(target)
