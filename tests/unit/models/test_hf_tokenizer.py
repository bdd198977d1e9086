"""The Hugging Face tokenizer of SigLIP offline: a clear error without its files, a working tokenizer from a cache."""

import pytest
import torch
from huggingface_hub import scan_cache_dir
from toys import STAND_IN_REVISION, cache_siglip_tokenizer

from clipmech.models import loading

SIGLIP = loading.ModelSpec("siglip", "ViT-B-16-SigLIP", None)
REPO = "timm/ViT-B-16-SigLIP"  # text_cfg.hf_tokenizer_name of open_clip's ViT-B-16-SigLIP config
#: Shapes-style captions the stand-in tokenizer is fitted to.
CAPTIONS = ["a red circle in the center", "a blue square at the top left and a green triangle", "a photo of a shape"]


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
    def broken(architecture, context_length=None):
        raise OSError(f"tokenizer.json of {architecture} is not valid JSON")

    monkeypatch.setattr(loading.open_clip, "get_tokenizer", broken)
    with pytest.raises(OSError, match="is not valid JSON") as raised:
        loading.load_tokenizer(SIGLIP)
    assert type(raised.value) is OSError


def test_stand_in_tokenizer_loads_offline(offline_hub):
    """The stand-in of tests/toys.py is a valid Hub cache entry, and open_clip's HFTokenizer reads it as SigLIP's."""
    stand_in = cache_siglip_tokenizer(offline_hub, "ViT-B-16-SigLIP", CAPTIONS)
    (repo,) = scan_cache_dir(offline_hub).repos
    (revision,) = repo.revisions
    assert (repo.repo_id, revision.commit_hash, revision.refs) == (REPO, STAND_IN_REVISION, frozenset({"main"}))
    assert {file.file_name for file in revision.files} == {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    assert all(file.file_path.is_symlink() for file in revision.files)  # snapshots link to blobs, as the Hub's

    tokenizer = loading.load_tokenizer(SIGLIP)
    backend = tokenizer.tokenizer
    assert (type(backend).__name__, backend.pad_token_id, backend.eos_token_id, backend.unk_token_id) == (
        "T5Tokenizer",
        1,
        1,
        2,
    )
    assert len(backend) == stand_in.get_vocab_size() <= 32000  # text_cfg.vocab_size: ids index the embedding
    prompts = ["A red circle.", "a photo of a blue square", "a purple hexagon"]
    tokens_PL = tokenizer(prompts)
    assert tokens_PL.shape == (3, 64) and tokens_PL.dtype == torch.int64  # context_length of the config
    ids = stand_in.get_vocab()
    eos = pad = 1  # SigLIP pads with its end-of-sequence token
    expected = [
        [ids[f"\u2581{w}"] for w in ("a", "red", "circle")] + [eos],  # lowercased, punctuation dropped
        [ids[f"\u2581{w}"] for w in "a photo of a blue square".split()] + [eos],
        [
            ids["\u2581a"],
            ids["\u2581"],
            *(ids[c] for c in "purple"),
            ids["\u2581"],
            ids["h"],
            ids["e"],
            2,
            *(ids[c] for c in "agon"),
            eos,
        ],
    ]
    for row, prefix in zip(tokens_PL.tolist(), expected):
        assert row == prefix + [pad] * (64 - len(prefix))
