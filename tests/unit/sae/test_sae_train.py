import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from toys import planted_dictionary, write_site_store

from clipmech import artefacts
from clipmech.sae import streaming, train
from clipmech.sae.model import TopKSAE, load_sae
from clipmech.sae.train import LOG_COLUMNS, SAETrainConfig, resume_path, scaled_lr, train_sae, train_step
from clipmech.stages import train_sae as train_stage

SITE = "visual.blocks.1.hook_resid_pre"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _store(tmp_path, x_ND, n_tokens=17, batch=20):
    return write_site_store(tmp_path / "s.zarr", x_ND.reshape(-1, n_tokens, x_ND.shape[1]), SITE, batch)


def test_scaled_lr_and_latent_count():
    assert scaled_lr(2e-4, 2**14) == pytest.approx(2e-4)
    assert scaled_lr(2e-4, 2**16) == pytest.approx(1e-4)
    assert scaled_lr(2e-4, 2**12) == pytest.approx(4e-4)
    assert SAETrainConfig(expansion=8).latents(64) == 512
    assert SAETrainConfig(expansion=85.33, n_latents=65_536).latents(768) == 65_536
    with pytest.raises(ValueError, match="set n_latents"):
        SAETrainConfig(expansion=85.33).latents(768)
    assert SAETrainConfig(k_aux=None).auxk_latents(64) == 32 and SAETrainConfig(k_aux=0).auxk_latents(64) == 0
    with pytest.raises(ValueError, match="less than one batch"):
        SAETrainConfig(n_tokens=10, batch_size=11)
    with pytest.raises(ValueError, match="unknown tokens"):
        SAETrainConfig(tokens="cls")


def test_a_step_keeps_decoder_columns_unit_norm_and_counts_dead_latents():
    sae = TopKSAE(4, 64, 2, seed=1)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) + 3
    sae.init_from_data(x)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    since_fired = torch.full((64,), 100, dtype=torch.int64)
    cfg = SAETrainConfig(dead_tokens=100, n_tokens=8, batch_size=8)
    for _ in range(3):
        fired = (sae.encode(x) > 0).any(dim=0)
        dead_before = float((since_fired >= 100).float().mean())
        fvu, aux, l0, dead = train_step(sae, optimizer, x, since_fired, cfg).tolist()
        torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(64))
    assert 0 < fvu < 1 and aux > 0 and 0 < l0 <= 2 and 0 < dead < 1 and dead == dead_before
    # Counters: tokens since the last firing, 0 for the latents that fired in the last step.
    assert (since_fired[fired] == 0).all() and (since_fired[~fired] >= 100 + 8).all()


def test_planted_dictionary_is_recovered(tmp_path):
    """Sparse codes of 16 unit-norm atoms in 32 dimensions plus small noise: every atom is found by a
    decoder column (cosine >= 0.95 on average) and the FVU comes close to the noise floor."""
    rng = np.random.default_rng(0)
    noise = 0.01
    x, atoms = planted_dictionary(rng, 400 * 17, 32, 16, 2, noise)
    store = _store(tmp_path, x)
    cfg = SAETrainConfig(expansion=2, k=2, n_tokens=256 * 1500, batch_size=256, buffer_tokens=4096, dead_tokens=20_000)
    meta = train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "log.tsv")
    sae, stored_meta = load_sae(tmp_path / "sae.pt")
    assert stored_meta == meta and meta["n_latents"] == 64 and meta["d"] == 32
    cosines = atoms @ sae.W_dec.detach().numpy()
    assert cosines.max(axis=1).mean() >= 0.95
    floor = noise**2 * 32 / np.square(x - x.mean(axis=0)).sum(axis=1).mean()
    assert meta["final_fvu"] < floor + 0.01
    log = pd.read_csv(tmp_path / "log.tsv", sep="\t")
    assert tuple(log.columns) == LOG_COLUMNS and len(log) == 1500
    assert log["step"].tolist() == list(range(1, 1501)) and log["tokens"].iloc[-1] == 1500 * 256
    assert log["fvu"].iloc[:10].mean() > 5 * log["fvu"].iloc[-100:].mean()
    assert not resume_path(tmp_path / "sae.pt").exists()


def test_auxk_leaves_fewer_dead_latents(tmp_path):
    """Gaussian tokens with a power-law variance spectrum (std 1/i along dimension i, like the principal
    components of a residual stream): latents along the small directions lose the top-k and die;
    AuxK trains them on the residual and revives most of them."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((400 * 17, 16)) / np.arange(1, 17)).astype(np.float32)
    store = _store(tmp_path, x)
    dead = {}
    for k_aux in (None, 0):
        cfg = SAETrainConfig(
            expansion=8, k=2, k_aux=k_aux, n_tokens=256 * 1000, batch_size=256, buffer_tokens=4096, dead_tokens=20_000
        )
        train_sae(store, SITE, cfg, tmp_path / f"{k_aux}.pt", tmp_path / f"{k_aux}.tsv")
        log = pd.read_csv(tmp_path / f"{k_aux}.tsv", sep="\t")
        dead[k_aux] = log["dead_fraction"].iloc[-250:].mean()
        assert (log["auxk"] > 0).any() == (k_aux is None)
    assert dead[0] > 0.03 and dead[None] < dead[0] / 2


def _killing_batches(monkeypatch, n_batches):
    """Make the training stream raise KeyboardInterrupt at its ``n_batches``-th batch, as a killed job stops."""
    original = streaming.ShuffleStream.batches

    def dying(self, start=0):
        for served, batch in enumerate(original(self, start)):
            if served == n_batches - 1:
                raise KeyboardInterrupt("killed mid-training")
            yield batch

    monkeypatch.setattr(streaming.ShuffleStream, "batches", dying)


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(1)
    x, _ = planted_dictionary(rng, 120 * 17, 8, 12, 2, 0.05)
    store = _store(tmp_path, x)
    cfg = SAETrainConfig(
        expansion=4, k=2, n_tokens=64 * 40, batch_size=64, buffer_tokens=500, dead_tokens=300, checkpoint_every=7
    )
    reference = train_sae(store, SITE, cfg, tmp_path / "ref.pt", tmp_path / "ref.tsv", provenance={"code": "x"})
    _killing_batches(monkeypatch, 19)  # dies in step 19, after the checkpoint of step 14
    with pytest.raises(KeyboardInterrupt):
        train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "x"})
    assert not (tmp_path / "sae.pt").exists() and resume_path(tmp_path / "sae.pt").is_file()
    assert torch.load(resume_path(tmp_path / "sae.pt"), weights_only=True)["step"] == 14
    monkeypatch.undo()
    with caplog.at_level(logging.INFO):
        resumed = train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "x"})
    assert "after 14 of 40 steps" in caplog.text
    assert resumed == reference
    ref_sae, _ = load_sae(tmp_path / "ref.pt")
    sae, _ = load_sae(tmp_path / "sae.pt")
    for name, tensor in ref_sae.state_dict().items():
        assert torch.equal(sae.state_dict()[name], tensor), name
    assert (tmp_path / "sae.tsv").read_text() == (tmp_path / "ref.tsv").read_text()
    assert not resume_path(tmp_path / "sae.pt").exists()


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(2)
    x, _ = planted_dictionary(rng, 60 * 17, 8, 12, 2, 0.05)
    store = _store(tmp_path, x)
    cfg = SAETrainConfig(expansion=4, k=2, n_tokens=32 * 20, batch_size=32, buffer_tokens=500, checkpoint_every=5)
    _killing_batches(monkeypatch, 12)
    with pytest.raises(KeyboardInterrupt):
        train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "old"})
    monkeypatch.undo()
    train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "new"})
    assert "has other settings (extra differ); starting afresh" in caplog.text
    fresh = train_sae(store, SITE, cfg, tmp_path / "fresh.pt", tmp_path / "fresh.tsv", provenance={"code": "new"})
    assert load_sae(tmp_path / "sae.pt")[1]["final_fvu"] == fresh["final_fvu"]


def _small_run(tmp_path, seed=2):
    rng = np.random.default_rng(seed)
    x, _ = planted_dictionary(rng, 60 * 17, 8, 12, 2, 0.05)
    cfg = SAETrainConfig(expansion=4, k=2, n_tokens=32 * 20, batch_size=32, buffer_tokens=500, checkpoint_every=5)
    return _store(tmp_path, x), cfg


@pytest.mark.parametrize("damage", ["garble", "truncate", "drop_record"])
def test_a_damaged_resume_state_is_discarded_and_training_starts_afresh(tmp_path, monkeypatch, caplog, damage):
    store, cfg = _small_run(tmp_path)
    reference = train_sae(store, SITE, cfg, tmp_path / "ref.pt", tmp_path / "ref.tsv", provenance={"code": "x"})
    _killing_batches(monkeypatch, 12)  # checkpointed after step 10
    with pytest.raises(KeyboardInterrupt):
        train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "x"})
    monkeypatch.undo()
    state = resume_path(tmp_path / "sae.pt")
    data = bytearray(state.read_bytes())
    if damage == "garble":
        data[len(data) // 2] ^= 0xFF
        state.write_bytes(bytes(data))
    elif damage == "truncate":
        state.write_bytes(bytes(data[:300]))
    else:
        artefacts.record_path(state).unlink()
    with caplog.at_level(logging.INFO):
        resumed = train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv", provenance={"code": "x"})
    assert f"discarding the training state {state}" in caplog.text
    assert "resuming" not in caplog.text
    assert resumed == reference
    assert (tmp_path / "sae.tsv").read_text() == (tmp_path / "ref.tsv").read_text()
    assert not state.exists() and not artefacts.record_path(state).exists()


def test_non_finite_weights_fail_the_stage_naming_the_settings(tmp_path, monkeypatch):
    store, cfg = _small_run(tmp_path)
    original = train.train_step

    def poisoned(sae, *args, **kwargs):
        stats = original(sae, *args, **kwargs)
        with torch.no_grad():
            sae.b_enc[0] = float("nan")
        return stats

    monkeypatch.setattr(train, "train_step", poisoned)
    out = {"checkpoint": str(tmp_path / "sae.pt"), "log": str(tmp_path / "sae.tsv")}
    settings = {key: value for key, value in dataclasses.asdict(cfg).items()}
    with pytest.raises(ValueError, match=r"non-finite weights \(.*b_enc.*lr 0.0002 .*k 2, .*steps 20, batch_size 32"):
        train_stage.train_sae(
            model="m", site=SITE, store=str(store), sae=settings, out=out, device="cpu", threads=1, code="c"
        )
    assert not (tmp_path / "sae.pt").exists() and not artefacts.record_path(tmp_path / "sae.pt").exists()
    assert not resume_path(tmp_path / "sae.pt").exists()


def test_a_diverged_sae_is_published_with_a_flag_and_a_warning(tmp_path, caplog):
    store, cfg = _small_run(tmp_path)
    strict = dataclasses.replace(cfg, max_fvu=1e-6)
    with caplog.at_level(logging.WARNING):
        meta = train_sae(store, SITE, strict, tmp_path / "sae.pt", tmp_path / "sae.tsv")
    assert meta["diverged"] is True and meta["max_fvu"] == 1e-6
    assert "diverged: final FVU" in caplog.text and "max_fvu 1e-06" in caplog.text
    assert load_sae(tmp_path / "sae.pt")[1]["diverged"] is True
    assert train_sae(store, SITE, cfg, tmp_path / "ok.pt", tmp_path / "ok.tsv")["diverged"] is False


def test_training_on_a_store_larger_than_the_buffer(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x, _ = planted_dictionary(rng, 200 * 17, 8, 12, 2, 0.05)
    store = _store(tmp_path, x)  # 3400 tokens, chunks of 20 images x 17 tokens = 340
    streams = []

    class Recorded(streaming.ShuffleStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            streams.append(self)

    monkeypatch.setattr(train, "ShuffleStream", Recorded)
    cfg = SAETrainConfig(expansion=2, k=2, n_tokens=50 * 150, batch_size=50, buffer_tokens=700, holdout=0.1)
    train_sae(store, SITE, cfg, tmp_path / "sae.pt", tmp_path / "sae.tsv")
    (stream,) = streams
    assert stream.source.n_tokens > 4 * cfg.buffer_tokens and cfg.n_tokens > 2 * stream.source.n_tokens
    assert 340 <= stream.max_tokens_held <= cfg.buffer_tokens + cfg.batch_size - 1
