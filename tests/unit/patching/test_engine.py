"""Invariants of the batched patching engine (clipmech.patching.engine; methods.md Sec. 8).

Float64 random tiny CLIPs: the ViT's image and text towers, the ResNet's stages (whole tower) and its
attention-pool families (run from the last stage's output, as ``tracing.TowerRun`` runs them).
"""

from dataclasses import dataclass

import numpy as np
import open_clip
import pytest
import torch
from toys import no_hooks, text_pairs, vision_pairs

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.hooks.sites import hooked
from clipmech.models.towers import Tower, tower
from clipmech.patching import engine, measures
from clipmech.patching.components import components, layer_component, path_components
from clipmech.patching.corruptions import EmbeddingCorruption, embedding_module, embedding_std, word_positions
from clipmech.patching.tracing import TowerRun

ATOL = 1e-10
N_PAIRS = 3


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@dataclass
class Case:
    """One tower's sweep: what ``engine.sweep`` takes, and a sample of its components."""

    model: torch.nn.Module
    info: Tower
    forward: object
    metric: object
    clean: torch.Tensor
    corrupt: torch.Tensor
    found: list
    n_positions: int | None = None


def _sample(info, families, n_per_family, **kwargs):
    """About ``n_per_family`` components of each family, evenly strided (both layers, several positions)."""
    found = []
    for family in families:
        of_family = components(info, [family], **kwargs)
        found += of_family[:: max(1, len(of_family) // n_per_family)]
    return found


def _build(name, vit, rn) -> Case:
    if name == "vit":
        info = tower(vit, "visual")
        clean, corrupt, metric = vision_pairs(vit, N_PAIRS, seed=1)
        families = ["resid_pre", "attn_out", "mlp_out", "head", "neuron"]
        found = _sample(info, families, 4)
        return Case(vit, info, vit.encode_image, metric, clean, corrupt, found)
    if name == "text":
        info = tower(vit, "text")
        clean, corrupt, metric = text_pairs(vit, "clipmech-vit-tiny", N_PAIRS, seed=2)
        n_positions = int(clean.argmax(-1).max()) + 1
        families = ["resid_pre", "attn_out", "mlp_out", "head", "neuron"]
        found = _sample(info, families, 4, n_positions=n_positions)
        return Case(vit, info, vit.encode_text, metric, clean, corrupt, found, n_positions)
    info = tower(rn, "visual")
    clean, corrupt, metric = vision_pairs(rn, N_PAIRS, seed=3, cells=4, amplitude=10.0)
    if name == "rn":
        return Case(rn, info, rn.encode_image, metric, clean, corrupt, components(info, ["stage"]))
    last = f"visual.blocks.{info.n_layers - 1}.hook_resid_post"
    maps = []
    for images in (clean, corrupt):
        with torch.inference_mode(), hooked(rn, capture=[last]) as cache:
            rn.encode_image(images)
            maps.append(cache[last])
    found = _sample(info, ["pool_token", "pool_head", "pool_neuron"], 5)
    return Case(rn, info, rn.visual.attnpool, metric, *maps, found)


@pytest.fixture(scope="module", params=["vit", "text", "rn", "rn_pool"])
def case(request, vit, rn):
    return _build(request.param, vit, rn)


def _sweep(case, sets, **kwargs):
    return engine.sweep(case.model, case.forward, case.metric, case.clean, case.corrupt, sets, **kwargs)


def test_corruption_moves_the_metric(case):
    """The pairs carry signal: R is well defined for every pair below."""
    result = _sweep(case, [])
    assert np.all(np.abs(result.m_clean_Q - result.m_corrupt_Q) > 1e-3)
    assert result.m_patched_QK.shape == (N_PAIRS, 0)


@pytest.mark.parametrize("name", ["vit", "text", "rn"])
def test_restoring_a_whole_layer_recovers_everything_and_nothing_recovers_nothing(name, vit, rn):
    case = _build(name, vit, rn)
    sets = [[layer_component(case.info, layer)] for layer in range(case.info.n_layers)] + [[]]
    r_QK = measures.recovery(_sweep(case, sets))
    np.testing.assert_allclose(r_QK[:, :-1], 1.0, rtol=0, atol=ATOL)
    np.testing.assert_allclose(r_QK[:, -1], 0.0, rtol=0, atol=ATOL)
    assert no_hooks(case.model)


@pytest.mark.parametrize("name", ["vit", "text", "rn"])
def test_noising_a_whole_layer_gives_the_corrupted_run(name, vit, rn):
    case = _build(name, vit, rn)
    sets = [[layer_component(case.info, layer)] for layer in range(case.info.n_layers)] + [[]]
    result = _sweep(case, sets, direction="noising")
    expected = np.broadcast_to(result.m_corrupt_Q[:, None], (N_PAIRS, case.info.n_layers))
    np.testing.assert_allclose(result.m_patched_QK[:, :-1], expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(result.m_patched_QK[:, -1], result.m_clean_Q, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(result.m_base_Q, result.m_clean_Q)
    np.testing.assert_allclose(measures.delta_logit(result)[:, -1], 0.0, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["vit", "text", "rn_pool"])
def test_restoring_all_path_components_recovers_everything(name, vit, rn):
    """Circuit completeness: the embeddings plus every attention and MLP output (ResNet: every pool head).

    A control: without the embeddings and the last block's attention outputs that block's attention
    reads corrupted embeddings through the residual stream, so R != 1 (ResNet: without one pool head).
    """
    case = _build(name, vit, rn)
    paths = path_components(case.info, case.n_positions)
    last = case.info.n_layers - 1
    if case.info.kind == "resnet":
        partial = paths[:-1]
    else:
        partial = [c for c in paths if c.family == "mlp_out" or (c.family == "attn_out" and c.layer < last)]
    r_QK = measures.recovery(_sweep(case, [paths, partial]))
    np.testing.assert_allclose(r_QK[:, 0], 1.0, rtol=0, atol=ATOL)
    assert np.all(np.abs(r_QK[:, 1] - 1.0) > 1e4 * ATOL)


@pytest.mark.parametrize("direction", engine.DIRECTIONS)
def test_a_clean_run_patched_into_itself_is_unchanged(case, direction):
    result = engine.sweep(
        case.model, case.forward, case.metric, case.clean, case.clean, [[c] for c in case.found], direction=direction
    )
    # Equal up to float64 rounding: the patched runs go through the model in larger batches than the clean
    # run, and on some CPUs (this AMD EPYC) the matrix products' blocking, and so their last bits, follow
    # the batch size (8.9e-16 here); a patch that changed anything would move the margin by far more.
    np.testing.assert_allclose(result.m_corrupt_Q, result.m_clean_Q, rtol=0, atol=1e-13)
    expected_QK = np.repeat(result.m_clean_Q[:, None], len(case.found), 1)
    np.testing.assert_allclose(result.m_patched_QK, expected_QK, rtol=0, atol=1e-13)


def test_results_do_not_depend_on_batch_order_or_size(case):
    sets = [[c] for c in case.found] + [case.found[::3]]
    reference = _sweep(case, sets)
    generator = torch.Generator().manual_seed(4)
    pairs_Q, order_K = torch.randperm(N_PAIRS, generator=generator), torch.randperm(len(sets), generator=generator)

    def metric(outputs, pairs_B):  # row pair q of the permuted sweep is pair pairs_Q[q] of the reference
        return case.metric(outputs, pairs_Q.to(pairs_B.device)[pairs_B])

    permuted = engine.sweep(
        case.model, case.forward, metric, case.clean[pairs_Q], case.corrupt[pairs_Q], [sets[k] for k in order_K]
    )
    np.testing.assert_allclose(permuted.m_clean_Q, reference.m_clean_Q[pairs_Q], rtol=0, atol=ATOL)
    np.testing.assert_allclose(permuted.m_corrupt_Q, reference.m_corrupt_Q[pairs_Q], rtol=0, atol=ATOL)
    expected = reference.m_patched_QK[pairs_Q][:, order_K]
    np.testing.assert_allclose(permuted.m_patched_QK, expected, rtol=0, atol=ATOL)
    for batch_size in (3, 7, 256):
        result = _sweep(case, sets, batch_size=batch_size)
        for field in ("m_clean_Q", "m_corrupt_Q", "m_patched_QK"):
            np.testing.assert_allclose(getattr(result, field), getattr(reference, field), rtol=0, atol=ATOL)


@pytest.mark.parametrize("direction", engine.DIRECTIONS)
def test_sweep_equals_the_loop_reference(case, direction):
    sets = [[c] for c in case.found] + [case.found[::2], []]
    batched = _sweep(case, sets, direction=direction, batch_size=16)
    looped = engine.loop_sweep(
        case.model, case.forward, case.metric, case.clean, case.corrupt, sets, direction=direction
    )
    for field in ("m_clean_Q", "m_corrupt_Q", "m_patched_QK"):
        np.testing.assert_allclose(getattr(batched, field), getattr(looped, field), rtol=0, atol=ATOL)
    assert batched.direction == looped.direction == direction
    assert np.abs(batched.m_patched_QK - batched.m_base_Q[:, None]).max() > 1e-3, "some patch changes the metric"


@pytest.mark.parametrize("direction", engine.DIRECTIONS)
def test_shared_prefix_equals_running_every_row_through_every_block(case, direction):
    """The fast path changes nothing but rounding, and it does skip blocks: block 0 sees only the rows
    that patch block 0 plus the clean and corrupted runs."""
    sets = [[c] for c in case.found] + [case.found[:3], []]
    seen = []
    handle = case.info.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        fast = _sweep(case, sets, direction=direction, batch_size=64)
    finally:
        handle.remove()
    slow = _sweep(case, sets, direction=direction, batch_size=64, share_prefix=False)
    np.testing.assert_allclose(fast.m_patched_QK, slow.m_patched_QK, rtol=0, atol=ATOL)
    np.testing.assert_allclose(fast.m_clean_Q, slow.m_clean_Q, rtol=0, atol=ATOL)
    if seen:  # the pool families never run the blocks
        at_block_0 = sum(1 for patch_set in sets if patch_set and min(c.layer or 0 for c in patch_set) == 0)
        assert sum(seen) == N_PAIRS * (2 + at_block_0) < N_PAIRS * (2 + len(sets))


def test_pool_families_from_the_last_stage_equal_the_whole_tower(rn):
    """``TowerRun.sweep(pool=True)`` (the attention pool on captured stage outputs) = the full ResNet run."""
    info = tower(rn, "visual")
    clean, corrupt, metric = vision_pairs(rn, N_PAIRS, seed=3, cells=4, amplitude=10.0)
    run = TowerRun(rn, info, rn.encode_image, metric, clean, corrupt, None, info.n_tokens, batch_size=16)
    sets = [[c] for c in _sample(info, ["pool_token", "pool_head", "pool_neuron"], 5)]
    for direction in engine.DIRECTIONS:
        pooled, whole = run.sweep(sets, direction, pool=True), run.sweep(sets, direction)
        for field in ("m_clean_Q", "m_corrupt_Q", "m_patched_QK"):
            np.testing.assert_allclose(getattr(pooled, field), getattr(whole, field), rtol=0, atol=ATOL)


def _hooked_corruption(model, tower_name, kind, std, seed, words_QT, forward, metric, inputs):
    """The metric of each input with the embedding module's output zeroed or noised by a forward hook."""
    m_Q = np.empty(inputs.shape[0])
    for q in range(inputs.shape[0]):

        def hook(module, args, output, q=q):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + q)
            noise = torch.randn(output.shape[1:], generator=generator, dtype=torch.float64) * std
            new = torch.zeros_like(output) if kind == "zero" else output + noise.to(output.dtype)
            return new if words_QT is None else torch.where(words_QT[q][None, :, None], new, output)

        handle = embedding_module(model, tower_name).register_forward_hook(hook)
        try:
            with torch.inference_mode():
                m_Q[q] = float(metric(forward(inputs[q : q + 1]), torch.tensor([q]))[0])
        finally:
            handle.remove()
    return m_Q


@pytest.mark.parametrize("kind", ["zero", "noise"])
@pytest.mark.parametrize("name", ["vit", "text", "rn"])
def test_embedding_corruptions_are_hooked_runs_with_one_noise_per_pair(name, kind, vit, rn):
    case = _build(name, vit, rn)
    tower_name = case.info.name
    special = torch.unique(open_clip.get_tokenizer("clipmech-vit-tiny")([""])) if tower_name == "text" else None
    words_QT = word_positions(case.clean, special) if tower_name == "text" else None
    std = 3.0 * embedding_std(case.model, tower_name, case.clean, special)
    expected = _hooked_corruption(case.model, tower_name, kind, std, 5, words_QT, case.forward, case.metric, case.clean)
    sets = [[layer_component(case.info, case.info.n_layers - 1)], [], case.found[:2]]
    results = {}
    for direction in engine.DIRECTIONS:
        for batch_size in (3, 4, 256):  # a fresh corruption per layout: the noise is redrawn, not cached
            corruption = EmbeddingCorruption(case.model, tower_name, kind, std=std, seed=5, words_QT=words_QT)
            results[direction, batch_size] = engine.sweep(
                case.model, case.forward, case.metric, case.clean, case.clean, sets, direction=direction,
                batch_size=batch_size, corruption=corruption,
            )  # fmt: skip
    m_clean = _sweep(case, []).m_clean_Q
    for (direction, _), result in results.items():
        np.testing.assert_allclose(result.m_corrupt_Q, expected, rtol=0, atol=ATOL)
        np.testing.assert_allclose(result.m_clean_Q, m_clean, rtol=0, atol=ATOL)
        source, base = (m_clean, expected) if direction == "denoising" else (expected, m_clean)
        np.testing.assert_allclose(result.m_patched_QK[:, 0], source, rtol=0, atol=ATOL)
        np.testing.assert_allclose(result.m_patched_QK[:, 1], base, rtol=0, atol=ATOL)
        reference = results[direction, 256].m_patched_QK[:, 2]
        np.testing.assert_allclose(result.m_patched_QK[:, 2], reference, rtol=0, atol=ATOL)
    assert np.all(np.abs(expected - m_clean) > 1e-4), "the corruption moves the metric"
    assert no_hooks(case.model)


def test_errors(vit):
    info = tower(vit, "visual")
    mixed = [[layer_component(info, 0), layer_component(tower(vit, "text"), 0)]]
    images = torch.zeros(1, 3, *info.image_size, dtype=torch.float64)
    with pytest.raises(ValueError, match="one tower"):
        engine.sweep(vit, vit.encode_image, lambda out, pairs: out[:, 0], images, images, mixed)
    clean, corrupt, metric = vision_pairs(vit, N_PAIRS, seed=1)
    sets = [[layer_component(info, 0)]]
    for sweep in (engine.sweep, engine.loop_sweep):
        with pytest.raises(ValueError, match="unknown direction 'sideways'; valid: denoising, noising"):
            sweep(vit, vit.encode_image, metric, clean, corrupt, sets, direction="sideways")
        with pytest.raises(ValueError, match=r"clean inputs \(3, 3, 64, 64\) and corrupted inputs \(2, 3, 64, 64\)"):
            sweep(vit, vit.encode_image, metric, clean, corrupt[:2], sets)
    with pytest.raises(ValueError, match="batch_size must be at least 3.*got 2"):
        engine.sweep(vit, vit.encode_image, metric, clean, corrupt, sets, batch_size=2)
    with pytest.raises(ValueError, match="unknown embedding corruption 'blur'; valid: zero, noise"):
        EmbeddingCorruption(vit, "visual", "blur")
    with pytest.raises(ValueError, match="needs words_QT"):
        EmbeddingCorruption(vit, "text", "zero")
    with pytest.raises(ValueError, match="unknown component families \\['stage'\\].*valid: resid_pre"):
        components(info, ["stage"])
    assert no_hooks(vit)
