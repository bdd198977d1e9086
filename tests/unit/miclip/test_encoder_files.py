"""Encoder files and the MiCLIP stages' inputs as verified artefacts: sha256 checks, weights_only, finite or refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipmech import artefacts
from clipmech.data import shapes
from clipmech.miclip import encoder
from clipmech.stages import train_miclip as train_stage
from clipmech.stages.probe_miclip import load_probe

PARAMS = {"losses": ["both"], "seeds": [0, 1], "steps": 3, "batch_size": 4, "lr": 0.01, "temperature": 0.07}


def _encoders(rng, value=None):
    encoders = {("both", seed): rng.standard_normal((8, 4)).astype(np.float32) for seed in (0, 1)}
    if value is not None:
        encoders["both", 1][2, 3] = value
    return encoders


def test_encoders_round_trip_through_weights_only(tmp_path, monkeypatch):
    encoders = _encoders(np.random.default_rng(0))
    path = tmp_path / "encoders.pt"
    encoder.save_encoders(path, encoders, site="visual.blocks.0", params=PARAMS, dataset_sha256="ab")
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    record = encoder.load_encoders(path)
    assert calls == [True]
    assert record["losses"] == ["both"] and record["seeds"] == [0, 1] and record["params"] == PARAMS
    assert record["site"] == "visual.blocks.0" and record["dataset_sha256"] == "ab"
    for (loss, seed), W in encoders.items():
        assert np.array_equal(record["W"][f"{loss}/{seed}"].numpy(), W)


def test_a_garbled_or_truncated_encoder_file_is_refused(tmp_path):
    path = tmp_path / "encoders.pt"
    encoder.save_encoders(path, _encoders(np.random.default_rng(0)), site="s", params=PARAMS, dataset_sha256="ab")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"encoders\.pt is corrupt: it was garbled.*rule train_miclip"):
        encoder.load_encoders(path)
    encoder.save_encoders(path, _encoders(np.random.default_rng(0)), site="s", params=PARAMS, dataset_sha256="ab")
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"encoders\.pt is corrupt: it is truncated.*rule train_miclip"):
        encoder.load_encoders(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_encoders_are_refused_on_save_and_on_load(tmp_path, value):
    path = tmp_path / "encoders.pt"
    with pytest.raises(ValueError, match=r"both/1 .*non-finite.*lr 0.01, steps 3, batch_size 4, temperature 0.07"):
        encoder.save_encoders(
            path, _encoders(np.random.default_rng(0), value), site="s", params=PARAMS, dataset_sha256="a"
        )
    assert list(tmp_path.iterdir()) == []
    record = {"W": {"both/0": torch.tensor([[value]])}, "losses": [], "seeds": [], "site": "", "params": {}}
    artefacts.save_torch(path, {**record, "dataset_sha256": ""}, rule="train_miclip")
    with pytest.raises(ValueError, match="non-finite weights in both/0"):
        encoder.load_encoders(path)


def _probe_and_concepts(tmp_path, rng, n=6, d=4, e=8):
    probe, concepts = tmp_path / "probe.npz", tmp_path / "concepts.npz"
    artefacts.save_npz(
        probe,
        rule="probe_miclip",
        image_acts=rng.standard_normal((n, d)).astype(np.float32),
        predictions=np.zeros((n, 3), dtype=np.int64),
        reference_images=rng.standard_normal((n, e)).astype(np.float32),
        vocabulary=np.array("shapes"),
        n_prefix_tokens=np.int64(1),
        grid=np.array([2, 2]),
        site=np.array("visual.blocks.0"),
        dataset_sha256=np.array("ab"),
        train_images=np.arange(0, n, 2),
        heldout_images=np.arange(1, n, 2),
    )
    artefacts.save_npz(
        concepts, rule="embed_miclip_concepts", concept_embeddings=rng.standard_normal((len(shapes.FEATURES), e))
    )
    return probe, concepts


def test_train_miclip_stage_fails_on_a_nan_encoder(tmp_path, monkeypatch):
    probe, concepts = _probe_and_concepts(tmp_path, np.random.default_rng(1))
    nan = _encoders(np.random.default_rng(0), np.nan)
    curves = {key: (np.ones(3), np.ones(3)) for key in nan}
    monkeypatch.setattr(encoder, "train_all", lambda *args, **kwargs: (nan, curves))
    out = {name: str(tmp_path / "out" / name) for name in ("encoders.pt", "training.tsv")}
    out = dict(zip(("encoders", "log"), out.values()))
    with pytest.raises(ValueError, match="non-finite weights: training diverged with lr 0.01"):
        train_stage.train_miclip(probe=str(probe), concepts=str(concepts), out=out, train=PARAMS, threads=1)
    assert not (tmp_path / "out" / "encoders.pt").exists()
    assert not (tmp_path / "out").exists() or not any(p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())


def test_train_miclip_stage_refuses_a_garbled_probe(tmp_path):
    probe, concepts = _probe_and_concepts(tmp_path, np.random.default_rng(1))
    with load_probe(probe) as npz:
        assert str(npz["site"]) == "visual.blocks.0"
    data = bytearray(probe.read_bytes())
    data[len(data) // 3] ^= 0x10
    probe.write_bytes(bytes(data))
    out = {"encoders": str(tmp_path / "e.pt"), "log": str(tmp_path / "t.tsv")}
    with pytest.raises(ValueError, match=r"probe\.npz is corrupt.*rule probe_miclip"):
        train_stage.train_miclip(probe=str(probe), concepts=str(concepts), out=out, train=PARAMS, threads=1)
