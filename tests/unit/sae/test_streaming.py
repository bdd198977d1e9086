import numpy as np
import pytest
import torch
from toys import write_site_store

from clipmech.sae.streaming import ShuffleStream, SiteTokens, split_images

SITE = "visual.blocks.1.hook_resid_pre"
N_IMAGES, N_TOKENS = 50, 5  # 1 class token + 4 patches
BATCH = 8  # images per zarr chunk: 7 chunks, the last of 2 images


@pytest.fixture(scope="module")
def id_store(tmp_path_factory):
    """A store whose unit 0 is the image index and unit 1 the token index of each token."""
    acts = np.zeros((N_IMAGES, N_TOKENS, 3), dtype=np.float32)
    acts[:, :, 0] = np.arange(N_IMAGES)[:, None]
    acts[:, :, 1] = np.arange(N_TOKENS)[None, :]
    acts[:, :, 2] = np.random.default_rng(0).standard_normal((N_IMAGES, N_TOKENS))
    return write_site_store(tmp_path_factory.mktemp("ids") / "s.zarr", acts, SITE, BATCH)


def _ids(batch):
    return [(int(image), int(token)) for image, token in batch[:, :2].round().to(torch.int64).tolist()]


def test_split_images():
    train, heldout = split_images(50, 0.1, seed=3)
    assert len(heldout) == 5 and len(train) == 45
    assert np.array_equal(np.sort(np.concatenate([train, heldout])), np.arange(50))
    again = split_images(50, 0.1, seed=3)
    assert np.array_equal(again[1], heldout)
    assert not np.array_equal(split_images(50, 0.1, seed=4)[1], heldout)
    assert len(split_images(10, 0.0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_images(10, 1.0, seed=0)


@pytest.mark.parametrize(("tokens", "positions"), [("patch", [1, 2, 3, 4]), ("class", [0]), ("all", [0, 1, 2, 3, 4])])
def test_site_tokens_select_images_and_tokens(id_store, tokens, positions):
    images = [3, 9, 10, 49]
    source = SiteTokens(id_store, SITE, tokens, images)
    assert source.d == 3 and source.tokens_per_image == len(positions)
    assert source.n_tokens == 4 * len(positions) and source.n_chunks == 7
    assert source.chunk_tokens.tolist() == [len(positions), 2 * len(positions), 0, 0, 0, 0, len(positions)]
    read = [pair for batch in source.batches(3) for pair in _ids(batch)]
    assert read == [(image, token) for image in images for token in positions]
    assert all(batch.dtype == torch.float32 for batch in source.batches(3))


def test_site_tokens_errors(id_store, tmp_path):
    with pytest.raises(ValueError, match="unknown tokens"):
        SiteTokens(id_store, SITE, "cls")
    with pytest.raises(ValueError, match="not in the activation store"):
        SiteTokens(id_store, "visual.blocks.0.hook_resid_pre", "all")
    with pytest.raises(ValueError, match="0..49"):
        SiteTokens(id_store, SITE, "all", [50])
    no_class = write_site_store(tmp_path / "nc.zarr", np.zeros((4, 3, 2)), SITE, 2, n_prefix_tokens=0)
    with pytest.raises(ValueError, match="no class token"):
        SiteTokens(no_class, SITE, "class")
    text = write_site_store(tmp_path / "t.zarr", np.zeros((4, 3, 2)), "text.blocks.0.hook_resid_post", 2)
    with pytest.raises(ValueError, match="text-tower site"):
        SiteTokens(text, "text.blocks.0.hook_resid_post", "patch")
    assert SiteTokens(text, "text.blocks.0.hook_resid_post", "all").n_tokens == 12


def test_an_epoch_covers_every_training_token_once_in_a_seeded_chunk_order(id_store):
    train, heldout = split_images(N_IMAGES, 0.2, seed=1)
    source = SiteTokens(id_store, SITE, "patch", train)
    stream = ShuffleStream(source, batch_size=5, buffer_tokens=70, seed=5)
    order = stream.chunk_order(0)
    assert sorted(order.tolist()) == list(range(source.n_chunks))
    assert np.array_equal(order, ShuffleStream(source, 5, 70, seed=5).chunk_order(0))
    assert not np.array_equal(order, stream.chunk_order(1))
    assert not all(np.array_equal(order, ShuffleStream(source, 5, 70, seed=s).chunk_order(0)) for s in range(6, 9))
    rounds = stream.rounds(0)
    assert [chunk for run in rounds for chunk in run] == [c for c in order.tolist() if source.chunk_tokens[c]]
    assert all(source.chunk_tokens[run].sum() <= 70 for run in rounds)
    # Two epochs: each the training tokens exactly once; never a held-out image.
    n_batches = 2 * source.n_tokens // 5  # 160 tokens an epoch; batches span rounds
    batches = stream.batches()
    seen = [pair for _ in range(n_batches) for pair in _ids(next(batches))]
    expected = sorted((int(image), token) for image in train for token in range(1, 5))
    assert sorted(seen[: source.n_tokens]) == expected and sorted(seen[source.n_tokens :]) == expected
    assert seen[: source.n_tokens] != seen[source.n_tokens :]  # each epoch its own order
    assert not {image for image, _ in seen} & set(heldout.tolist())
    # Tokens of a round come out in random order, not chunk by chunk.
    read_order = [
        pair for chunk in rounds[0] for pair in _ids(torch.from_numpy(source.read_chunk(chunk).astype(np.float32)))
    ]
    first_round = seen[: len(read_order)]
    assert sorted(first_round) == sorted(read_order) and first_round != read_order


def test_memory_is_bounded_by_the_buffer_not_the_store(id_store):
    source = SiteTokens(id_store, SITE, "all")
    stream = ShuffleStream(source, batch_size=6, buffer_tokens=80, seed=0)
    assert source.n_tokens == 250 > 3 * stream.buffer_tokens
    batches = stream.batches()
    for _ in range(3 * source.n_tokens // 6):
        next(batches)
    assert 40 <= stream.max_tokens_held <= stream.buffer_tokens + stream.batch_size - 1


def test_restart_at_a_batch_continues_the_same_stream(id_store):
    source = SiteTokens(id_store, SITE, "all")
    stream = ShuffleStream(source, batch_size=9, buffer_tokens=90, seed=2)
    batches = stream.batches()
    reference = [next(batches) for _ in range(70)]  # more than two epochs of 250 tokens
    for start in (0, 13, 27, 55):
        restarted = stream.batches(start)
        for batch in reference[start : start + 5]:
            assert torch.equal(next(restarted), batch)


def test_buffer_smaller_than_a_chunk_is_refused(id_store):
    source = SiteTokens(id_store, SITE, "all")
    with pytest.raises(ValueError, match="at least 40"):
        ShuffleStream(source, batch_size=4, buffer_tokens=39, seed=0)
