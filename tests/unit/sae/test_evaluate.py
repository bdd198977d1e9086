import json
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import xarray as xr
from hand_saes import identity_sae, random_sae

from clipmech.data import shapes
from clipmech.hooks.sites import hooked
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.sae import alignment, evaluate, latents
from clipmech.sae.model import save_sae
from clipmech.stores import activation_extraction

SITE = "visual.blocks.1.hook_resid_pre"


def _acts(values_NTD: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values_NTD.astype(np.float16), dims=("image", "token", "unit"))


def test_metrics_by_hand():
    stats = evaluate.ReconstructionStats(np.array([1.0, 1.0]), n_latents=3)
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    # Top-2 codes: latent 0 at 1 and 3; latents 2 and 1 kept at 0 (ReLU'd), which is no firing.
    stats.update(x, x / 2, torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[0, 2], [0, 1]]))
    summary = stats.summary(dense_threshold=0.5)
    # sse = 1 + 1, sst = (1 + 1) + (1 + 1); cosine 1; norm ratio 1/2; latent 0 fires on both tokens.
    assert summary["fvu"] == 0.5 and summary["l0"] == 1.0
    assert summary["cosine"] == pytest.approx(1.0) and summary["norm_ratio"] == pytest.approx(0.5)
    assert summary["dead_fraction"] == pytest.approx(2 / 3) and summary["dense_fraction"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(stats.frequency, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="zero tokens"):
        evaluate.ReconstructionStats(np.zeros(2), 3).summary()


def test_mean_predictor_has_fvu_exactly_one():
    rng = np.random.default_rng(0)
    x_BD = rng.standard_normal((50, 7))
    mean_D = x_BD.mean(axis=0)
    stats = evaluate.ReconstructionStats(mean_D, n_latents=4)
    stats.update(
        torch.from_numpy(x_BD),
        torch.from_numpy(np.broadcast_to(mean_D, x_BD.shape).copy()),
        torch.zeros(50, 1),
        torch.zeros(50, 1, dtype=torch.int64),
    )
    assert stats.fvu == 1.0
    # Through the SAE and a store: integer tokens (exact in float16), 16 per dimension, so that mu is exact in
    # float32 too; an SAE whose latents never fire predicts b_pre = mu.
    values = rng.integers(-8, 9, size=(4, 5, 6)).astype(np.float64)
    mu = values[:, 1:].reshape(-1, 6).mean(axis=0)
    sae = random_sae(6, 12, 3, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(-1e6)
        sae.b_pre.copy_(torch.from_numpy(mu))
    stats = evaluate.reconstruction_stats(sae, _acts(values), [0, 1, 2, 3], latents.token_positions("patch", 5, 1), 3)
    np.testing.assert_array_equal(stats.mean_D.numpy(), mu)
    summary = stats.summary()
    assert summary["fvu"] == 1.0 and summary["l0"] == 0.0 and summary["dead_fraction"] == 1.0
    assert summary["n_tokens"] == 16


def test_identity_reconstruction_has_fvu_zero():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.5, 2.0, size=(6, 4, 5)) * rng.choice([-1.0, 1.0], size=(6, 4, 5))
    stats = evaluate.reconstruction_stats(identity_sae(5), _acts(values), np.arange(6), np.arange(4), 4)
    summary = stats.summary()
    assert summary["fvu"] == 0.0 and summary["l0"] == 5.0
    assert summary["cosine"] == pytest.approx(1.0, abs=1e-12) and summary["norm_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert summary["dead_fraction"] == 0.0
    # Every latent fires on the tokens where its coordinate has its sign: well above 10 % here.
    signs = np.sign(values.astype(np.float16)).reshape(-1, 5)
    np.testing.assert_array_equal(stats.frequency, np.concatenate([(signs > 0).mean(0), (signs < 0).mean(0)]))


def test_reconstruction_from_codes_in_slices_is_the_forward_pass(monkeypatch):
    """Encoded a few tokens at a time from the top-k codes, the metrics are those of the dense forward pass (to
    float32 rounding: the encoder's matrix product may round differently for another number of rows)."""
    rng = np.random.default_rng(2)
    values = rng.standard_normal((5, 4, 6))
    sae = random_sae(6, 20, 3, seed=4)
    positions = np.arange(4)
    whole = evaluate.reconstruction_stats(sae, _acts(values), np.arange(5), positions, 5)
    monkeypatch.setattr(evaluate, "ENCODE_ELEMENTS", 3 * 20)  # 3 tokens per encoder call
    sliced = evaluate.reconstruction_stats(sae, _acts(values), np.arange(5), positions, 5)
    x_BD = torch.from_numpy(values.astype(np.float16).astype(np.float32).reshape(-1, 6))
    with torch.inference_mode():
        x_hat_BD, z_Bn = sae(x_BD)
    np.testing.assert_array_equal(sliced.frequency, (z_Bn != 0).double().mean(dim=0).numpy())
    np.testing.assert_array_equal(whole.frequency, sliced.frequency)
    sse = float((x_BD.double() - x_hat_BD.double()).square().sum())
    assert sliced.sse == pytest.approx(sse, rel=1e-6) and whole.sse == pytest.approx(sse, rel=1e-6)
    assert sliced.summary() == pytest.approx(whole.summary(), rel=1e-6)


def test_frequency_histogram():
    histogram = evaluate.frequency_histogram(np.array([0.0, 0.0, 1.0, 0.5, 0.01, 1 / 1000]), n_tokens=1000)
    edges = np.asarray(histogram["log10_edges"])
    assert edges[0] == -3.0 and edges[-1] == 0.0 and np.allclose(np.diff(edges), evaluate.HISTOGRAM_BIN)
    assert histogram["n_dead"] == 2 and sum(histogram["counts"]) == 4
    counts = np.asarray(histogram["counts"])
    assert counts[0] == 1 and counts[-1] == 1  # 1/1000 in the first bin, frequency 1 in the last (closed) bin
    assert counts[np.searchsorted(edges, np.log10(0.5), side="right") - 1] == 1


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms("clipmech-vit-tiny", pretrained=None)
    return model.eval()


@pytest.mark.parametrize("tokens", ["patch", "class", "all"])
def test_error_term_splice_is_exact(vit, tokens):
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sae = random_sae(64, 96, 4, seed=1)
    positions = latents.token_positions(tokens, 65, 1)
    clean = evaluate.image_embeddings(vit, pixels, None, batch_size=2, device="cpu")
    spliced = {
        mode: evaluate.image_embeddings(
            vit, pixels, {SITE: evaluate.splice(sae, positions, mode, np.zeros(64))}, batch_size=2, device="cpu"
        )
        for mode in ("sae", "sae_error")
    }
    assert torch.equal(spliced["sae_error"], clean)
    assert not torch.allclose(spliced["sae"], clean, atol=1e-3)


def test_splice_changes_only_the_selected_tokens(vit):
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    sae = random_sae(64, 96, 4, seed=2)
    mean_D = np.linspace(-1, 1, 64)
    with hooked(vit, capture=[SITE]) as cache, torch.inference_mode():
        vit.encode_image(pixels)
        clean = cache[SITE].clone()
    for mode, expected in (("zero", lambda x: torch.zeros_like(x)), ("mean", None), ("sae", lambda x: sae(x)[0])):
        edit = evaluate.splice(sae, np.array([0, 3, 64]), mode, mean_D)
        with torch.inference_mode():
            out = edit(clean)
        keep = np.setdiff1d(np.arange(65), [0, 3, 64])
        assert torch.equal(out[:, keep], clean[:, keep])
        changed = out[:, [0, 3, 64]]
        if mode == "mean":
            torch.testing.assert_close(changed, torch.as_tensor(mean_D, dtype=torch.float32).expand_as(changed))
        else:
            torch.testing.assert_close(changed, expected(clean[:, [0, 3, 64]].reshape(-1, 64)).reshape(changed.shape))
    with pytest.raises(ValueError, match="valid modes are: sae, sae_error, zero, mean"):
        evaluate.splice(sae, np.array([0]), "ablate")
    with pytest.raises(ValueError, match="needs mean_D"):
        evaluate.splice(sae, np.array([0]), "mean")


def test_zero_shot_table_by_hand_and_zero_ablation_kl(vit):
    # Two images, two prompts: image 0 on prompt 0, image 1 between them; logit scale 1.
    texts = {"t": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    embeddings = {"clean": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "other": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    table = evaluate.zero_shot_table(embeddings, texts, {"t": np.array([0, 1])}, logit_scale=1.0)
    clean, other = table.set_index("condition").loc["clean"], table.set_index("condition").loc["other"]
    assert clean["kl"] == 0.0 and clean["accuracy"] == 0.5  # image 1 ties; argmax takes prompt 0
    p0 = torch.softmax(torch.tensor([1.0, 0.0], dtype=torch.float64), 0)  # cosines of image 0
    p1 = torch.tensor([0.5, 0.5], dtype=torch.float64)  # image 1: equal cosines
    q = torch.softmax(torch.tensor([0.0, 1.0], dtype=torch.float64), 0)
    kl = float((p0 * (p0 / q).log()).sum() + (p1 * (p1 / q).log()).sum()) / 2
    assert other["kl"] == pytest.approx(kl, rel=1e-12) and other["accuracy"] == 0.5
    with pytest.raises(KeyError, match="clean"):
        evaluate.zero_shot_table({"other": embeddings["other"]}, texts, {"t": np.array([0, 1])}, 1.0)

    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    sae = random_sae(64, 96, 4, seed=3)
    positions = latents.token_positions("patch", 65, 1)
    conditions = {"clean": evaluate.image_embeddings(vit, pixels, None, batch_size=4, device="cpu")}
    for mode in ("sae_error", "zero"):
        edit = {SITE: evaluate.splice(sae, positions, mode)}
        conditions[mode] = evaluate.image_embeddings(vit, pixels, edit, batch_size=4, device="cpu")
    texts = {task: loading.encode_text(vit, tokenizer, zeroshot.attribute_prompts(task)[1]) for task in ("colour",)}
    table = evaluate.zero_shot_table(conditions, texts, {"colour": np.array([0, 1, 2, 3])}, 100.0).set_index(
        "condition"
    )
    assert table.loc["clean", "kl"] == 0.0 and table.loc["sae_error", "kl"] == 0.0
    assert table.loc["zero", "kl"] > 0.0


def _tiny_store(tmp_path, n_per_count=4):
    dataset = tmp_path / "data"
    shapes.build(dataset, shapes.ShapesSpec(n_per_count=n_per_count, image_size=64, seed=5))
    store = activation_extraction.extract(
        ModelSpec("rand", "clipmech-vit-tiny", None),
        dataset,
        tmp_path / "a.zarr",
        sites=("visual.blocks.*.hook_mlp_out", SITE),
        batch_size=8,
        device="cpu",
        code="test-code",
    )
    return dataset, store


PARAMS = {
    "batch_size": 8,
    "split": "holdout",
    "dense_threshold": 0.1,
    "purity_k": 4,
    "coverage_ap": 0.3,
    "entropy_k": 4,
    "fit_tokens": 300,
    "kmeans_max_clusters": 16,
    "n_figure_latents": 3,
    "n_figure_images": 4,
}


@pytest.mark.parametrize("tokens", ["patch", "class"])
def test_evaluate_sae_stage(tmp_path, tokens):
    from clipmech.stages.evaluate_sae import evaluate_sae
    from clipmech.stages.plot_sae_evaluation import plot_sae_evaluation

    dataset, store = _tiny_store(tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    holdout = list(range(1, 20, 2))
    save_sae(checkpoint, random_sae(64, 128, 8, seed=4), {"site": SITE, "tokens": tokens, "holdout_images": holdout})
    names = {"metrics": "metrics.json", "latents": "latents.tsv", "alignment": "alignment.tsv"}
    out = {key: str(tmp_path / "out" / name) for key, name in names.items()}
    out["top_latents"] = str(tmp_path / "out" / "top_latents.npz")
    evaluate_sae(
        model=ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None),
        dataset_dir=str(dataset),
        store=str(store),
        sae=str(checkpoint),
        out=out,
        evaluation=PARAMS,
        seed=0,
        device="cpu",
        threads=1,
    )
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    recon = metrics["reconstruction"]
    assert recon["n_tokens"] == 10 * (64 if tokens == "patch" else 1)
    assert recon["fvu"] > 0 and 0 <= recon["dead_fraction"] <= 1 and recon["l0"] <= 8
    assert sum(metrics["histogram"]["counts"]) + metrics["histogram"]["n_dead"] == 128
    assert metrics["max_fvu"] == 1.0 and metrics["diverged"] == (recon["fvu"] > 1.0)  # the default bound
    downstream = metrics["downstream"]
    assert downstream["error_term_max_abs_diff"] == 0.0
    zero_shot = pd.DataFrame(downstream["zero_shot"])
    assert set(zero_shot["condition"]) == set(evaluate.CONDITIONS) and len(zero_shot) == 15
    assert (zero_shot.loc[zero_shot["condition"].isin(["clean", "sae_error"]), "kl"] == 0).all()
    assert (zero_shot.loc[zero_shot["condition"] == "zero", "kl"] > 0).all()
    assert (zero_shot["n_images"] == 2).all()  # images 1 and 3 of the 4 single-object images are held out
    table = pd.read_csv(out["alignment"], sep="\t")
    assert list(table["method"]) == list(alignment.METHODS)
    assert list(table.columns) == [
        "method",
        "n_units",
        "mean_best_auroc_image",
        "mean_best_auroc_patch",
        "mean_best_ap",
        "purity_at_4",
        "coverage_at_0.3",
        "mean_entropy",
    ]
    n_fit = 300 if tokens == "patch" else 10  # fit_tokens, or every class token of the 10 training images
    assert list(table["n_units"]) == [128, 64, 2 * min(64, n_fit), min(16, n_fit)]
    for column in ("mean_best_auroc_image", "mean_best_ap", "purity_at_4", "coverage_at_0.3"):
        assert table[column].between(0, 1).all()
    assert table["mean_best_auroc_patch"].isna().all() == (tokens == "class")
    assert table["mean_entropy"].between(0, np.log(16)).all()
    latents = pd.read_csv(out["latents"], sep="\t")
    assert tuple(latents.columns) == alignment.LATENT_COLUMNS and len(latents) == 128
    assert latents.loc[latents["frequency"] == 0, "entropy"].isna().all()  # a latent that never fires has none
    live = latents[~latents["dead"]]
    assert live["entropy"].notna().any() and set(live["top_concept"]) <= set(shapes.FEATURES)
    assert latents.loc[latents["dead"], "top_concept"].isna().all()  # a dead latent has no top concept ('')
    figures = {"histogram": str(tmp_path / "out" / "histogram.png"), "top_images": str(tmp_path / "out" / "top.png")}
    plot_sae_evaluation(
        metrics=out["metrics"], top_latents=out["top_latents"], out=figures, dense_threshold=0.1, label="test"
    )
    for figure in figures.values():
        assert Path(figure).read_bytes()[:4] == b"\x89PNG"
    if tokens == "patch":
        _diverged_titles(tmp_path, out, metrics)


def _diverged_titles(tmp_path, out, metrics):
    """The report's figures of a diverged SAE say so in red; a sound SAE's do not."""
    import matplotlib.pyplot as plt

    from clipmech.stages.plot_sae_evaluation import plot_sae_evaluation

    titles = []

    def capture(fig, path):
        texts = [ax.title for ax in fig.axes] + [t for t in [getattr(fig, "_suptitle", None)] if t is not None]
        titles.extend((t.get_text(), t.get_color()) for t in texts if t.get_text())
        plt.close(fig)

    figures = {"histogram": str(tmp_path / "h.png"), "top_images": str(tmp_path / "t.png")}
    for diverged in (False, True):
        record = {**metrics, "diverged": diverged, "reconstruction": {**metrics["reconstruction"], "fvu": 3.5e17}}
        path = tmp_path / f"metrics-{diverged}.json"
        path.write_text(json.dumps(record))
        titles.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("clipmech.figures.sae_eval.save_figure", capture)
            plot_sae_evaluation(
                metrics=str(path), top_latents=out["top_latents"], out=figures, dense_threshold=0.1, label="test"
            )
        warned = [text for text, colour in titles if text.startswith("DIVERGED (held-out FVU 3.5e+17 > max_fvu 1;")]
        assert len(warned) == (2 if diverged else 0), titles


def test_evaluate_sae_stage_refuses_mismatched_inputs(tmp_path, tiny_dataset):
    from clipmech.stages.evaluate_sae import evaluate_sae

    dataset, store = _tiny_store(tmp_path, n_per_count=1)
    checkpoint = tmp_path / "checkpoint.pt"
    save_sae(checkpoint, random_sae(64, 32, 4, seed=0), {"site": SITE, "tokens": "patch", "holdout_images": [0, 1]})
    kwargs = dict(
        model=ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None),
        store=str(store),
        sae=str(checkpoint),
        out={},
        seed=0,
        device="cpu",
        threads=1,
    )
    with pytest.raises(ValueError, match=r"extracted from a dataset with sha256 \w+, but .* has sha256"):
        evaluate_sae(dataset_dir=str(tiny_dataset), evaluation=PARAMS, **kwargs)
    with pytest.raises(ValueError, match="valid splits are: holdout, all"):
        evaluate_sae(dataset_dir=str(dataset), evaluation={**PARAMS, "split": "train"}, **kwargs)
    save_sae(checkpoint, random_sae(64, 32, 4, seed=0), {"site": SITE, "tokens": "patch", "holdout_images": [0, 5]})
    with pytest.raises(ValueError, match=r"holdout_images must be distinct image indices in 0..4"):
        evaluate_sae(dataset_dir=str(dataset), evaluation=PARAMS, **kwargs)
