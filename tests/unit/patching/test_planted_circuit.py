"""A planted circuit: the head sweep of the patching engine finds the one head the answer flows through.

The float64 tiny ViT (2 blocks, 4 heads) is rewired so that the class token, whose final residual
is the image embedding (``pool_type="tok"``), reads the image only through head ``PLANTED`` of
block 1:

* block 0's attention output projection is zero, so block 0 writes ``b_O`` to every token and the
  class token, which starts as ln_pre(class embedding + position 0), leaves block 0 input-independent
  (its MLP reads only that constant);
* in block 1 the output-projection columns of every head but ``PLANTED`` are zero, so the class
  token's attention output is ``result_PLANTED + b_O``; its MLP reads the class token only, and the
  image embedding is a function of ``result_PLANTED`` at the class token.

Hence, restoring one head's result (``attn.hook_result``, every token) from the clean run gives, by
construction: R = 1 for the planted head (the class token's residual becomes clean), R = 0 for
every other head (its result is zero in both runs). The MLPs and all attention patterns stay random.
Circuit sparsity as the paper counts it (heads and MLPs) is therefore one component: the planted head.
"""

import numpy as np
import open_clip
import pytest
import torch
from toys import seeded_double

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.hooks.sites import hooked
from clipmech.models.towers import tower
from clipmech.patching import engine, measures
from clipmech.patching.components import components
from clipmech.patching.tracing import TowerRun, circuit, vision_metric

PLANTED = (1, 2)  # (block, head)
N_PAIRS = 4


@pytest.fixture(scope="module")
def planted():
    model = seeded_double(lambda: open_clip.create_model("clipmech-vit-tiny"))
    assert model.visual.pool_type == "tok" and model.visual.attn_pool is None
    info = tower(model, "visual")
    layer, head = PLANTED
    with torch.no_grad():
        info.blocks[0].attn.out_proj.weight.zero_()
        keep = torch.zeros(info.width, dtype=torch.bool)
        keep[head * info.d_head : (head + 1) * info.d_head] = True
        info.blocks[layer].attn.out_proj.weight[:, ~keep] = 0.0
    return model, info


def _minimal_pairs(seed: int):
    """Random 64 px images; the corrupted one redraws the top-left quadrant (16 of the 64 patches)."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(N_PAIRS, 3, 64, 64, generator=generator, dtype=torch.float64)
    corrupt = clean.clone()
    corrupt[:, :, :32, :32] = torch.randn(N_PAIRS, 3, 32, 32, generator=generator, dtype=torch.float64)
    correct, foil = torch.randn(2, N_PAIRS, 64, generator=generator, dtype=torch.float64)
    return clean, corrupt, vision_metric(correct, foil, scale=100.0)


def test_the_construction_holds(planted):
    """The class token enters block 1 the same for every image; the planted head's result there does not."""
    model, info = planted
    clean, corrupt, _ = _minimal_pairs(seed=0)
    sites = ["visual.blocks.1.hook_resid_pre", "visual.blocks.1.attn.hook_result"]
    acts = []
    for images in (clean, corrupt):
        with torch.inference_mode(), hooked(model, capture=sites) as cache:
            model.encode_image(images)
            acts.append({site: cache[site] for site in sites})
    class_in = torch.cat([a[sites[0]][:, 0] for a in acts])
    torch.testing.assert_close(class_in, class_in[:1].expand_as(class_in), rtol=0, atol=1e-12)
    result_class = [a[sites[1]][:, 0] for a in acts]  # (N, H, D): every head's result at the class token
    others = [h for h in range(info.n_heads) if h != PLANTED[1]]
    assert torch.count_nonzero(result_class[0][:, others]) == 0
    assert (result_class[0][:, PLANTED[1]] - result_class[1][:, PLANTED[1]]).abs().amax() > 1e-3


def test_the_head_sweep_finds_the_planted_head(planted):
    model, info = planted
    clean, corrupt, metric = _minimal_pairs(seed=0)
    found = components(info, ["head"])
    result = engine.sweep(model, model.encode_image, metric, clean, corrupt, [[c] for c in found])
    assert np.all(np.abs(result.m_clean_Q - result.m_corrupt_Q) > 1e-2), "each pair's corruption moves the metric"
    r_QK = measures.recovery(result)
    planted_k = [k for k, c in enumerate(found) if (c.layer, c.head) == PLANTED]
    assert len(found) == info.n_layers * info.n_heads and len(planted_k) == 1
    mean_K = r_QK.mean(axis=0)
    assert np.flatnonzero(mean_K > 0.9).tolist() == planted_k
    assert np.all(np.abs(np.delete(mean_K, planted_k)) < 0.1)
    # By construction, exactly (to float64 rounding) and for every pair, not only on average.
    np.testing.assert_allclose(r_QK[:, planted_k[0]], 1.0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.delete(r_QK, planted_k, axis=1), 0.0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mlp, n_total", [("layer", 8 + 2), ("neuron", 8 + 2 * 256)])
def test_circuit_sparsity_counts_the_planted_head(planted, mlp, n_total):
    """Heads and MLPs at every token: the planted head alone restores the output, 1 of n_total components."""
    model, info = planted
    clean, corrupt, _ = _minimal_pairs(seed=0)
    with torch.inference_mode():  # the texts are the two images' embeddings: m_clean > 0 > m_corrupt
        correct, foil = model.encode_image(clean), model.encode_image(corrupt)
    run = TowerRun(
        model=model, info=info, forward=model.encode_image, metric=vision_metric(correct, foil, scale=100.0),
        clean=clean, corrupt=corrupt, corruption=None, n_positions=info.n_tokens, batch_size=64,
    )  # fmt: skip
    curve, summary = circuit(
        run, {}, min_effect=1e-3, threshold=0.8, n_points=16, n_random=2, n_resamples=50, seed=0, view="units", mlp=mlp
    )
    greedy = summary.set_index("order").loc["greedy"]
    assert greedy["n_pairs"] == N_PAIRS and greedy["n_total"] == n_total
    assert greedy["n_needed"] == 1 and greedy["fraction_needed"] == 1 / n_total
    first = curve[(curve["order"] == "greedy") & (curve["n_components"] == 1)]
    assert first["recovery"].iloc[0] == pytest.approx(1.0, abs=1e-10)
