"""The Hugging Face tokenizer of SigLIP offline: a clear error without its files, a working tokenizer from a cache."""

import json

import pytest
import torch
from huggingface_hub.file_download import repo_folder_name

from clipmech.models import loading

SIGLIP = loading.ModelSpec("siglip", "ViT-B-16-SigLIP", None)
REPO = "timm/ViT-B-16-SigLIP"  # text_cfg.hf_tokenizer_name of open_clip's ViT-B-16-SigLIP config
COMMIT = "0" * 40


def test_missing_tokenizer_files_name_the_model_repo_and_cache(offline_hub):
    with pytest.raises(FileNotFoundError) as raised:
        loading.load_tokenizer(SIGLIP)
    message = str(raised.value)
    for part in ("'siglip'", "(ViT-B-16-SigLIP)", f"'{REPO}'", str(offline_hub / "models--timm--ViT-B-16-SigLIP")):
        assert part in message, (part, message)
    assert "HF_HOME" in message and "load_model" in message
    assert isinstance(raised.value.__cause__, OSError)


def test_load_fails_on_the_tokenizer_before_building_the_model(offline_hub, monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("load() built the model before it had the tokenizer")

    monkeypatch.setattr(loading, "load_model", build)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        loading.load(SIGLIP)


def test_other_tokenizer_errors_pass_through(monkeypatch):
    def broken(architecture):
        raise OSError(f"tokenizer.json of {architecture} is not valid JSON")

    monkeypatch.setattr(loading.open_clip, "get_tokenizer", broken)
    with pytest.raises(OSError, match="is not valid JSON") as raised:
        loading.load_tokenizer(SIGLIP)
    assert type(raised.value) is OSError


def _cache_t5_stand_in(cache):
    """A tiny T5 (Unigram) tokenizer where an online run would have cached ``REPO``: the snapshot of one
    commit with tokenizer.json and tokenizer_config.json, and config.json recorded as absent on the Hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = "a red blue circle square photo of".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0 - i) for i, w in enumerate(words)]
    stand_in = Tokenizer(models.Unigram(vocab, unk_id=2))
    stand_in.pre_tokenizer = pre_tokenizers.Metaspace()
    stand_in.decoder = decoders.Metaspace()
    repo = cache / repo_folder_name(repo_id=REPO, repo_type="model")
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / ".no_exist" / COMMIT).mkdir(parents=True)
    (repo / ".no_exist" / COMMIT / "config.json").touch()
    stand_in.save(str(snapshot / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (snapshot / "tokenizer_config.json").write_text(json.dumps(config))
    return {w: 3 + i for i, w in enumerate(words)}


def test_cached_tokenizer_files_load_offline(offline_hub):
    ids = _cache_t5_stand_in(offline_hub)
    tokenizer = loading.load_tokenizer(SIGLIP)
    tokens_PL = tokenizer(["a red circle", "photo of a blue square"])
    assert tokens_PL.shape == (2, 64) and tokens_PL.dtype == torch.int64  # context_length of the config
    eos, pad = 1, 0
    expected = [[ids["a"], ids["red"], ids["circle"], eos], [ids[w] for w in "photo of a blue square".split()] + [eos]]
    for row, prefix in zip(tokens_PL.tolist(), expected):
        assert row == prefix + [pad] * (64 - len(prefix))
