"""Mean-ablation curves, rank-1 checks and direction replacement (clipmech.decomposition.components)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from toys import natural_stand_in

from clipmech.decomposition import components, pool
from clipmech.hooks import pool_forward


@pytest.fixture(scope="module")
def toy():
    """s (N, H, C), u (H, C, E), bias with known structure: E = 6, H = 3, C = 5."""
    rng = np.random.default_rng(0)
    s_NHC = rng.standard_normal((40, 3, 5)) * np.array([3.0, 1.0, 0.2])[None, :, None]
    u_HCE = rng.standard_normal((3, 5, 6))
    bias_E = rng.standard_normal(6)
    return s_NHC, u_HCE, bias_E


def _task(name, text_KE, images, truth):
    return components.ZeroShotTask(
        name, tuple(f"c{k}" for k in range(len(text_KE))), text_KE, np.asarray(images), np.asarray(truth)
    )


def test_zero_shot_accuracy_hand_case():
    y_NE = np.array([[1.0, 0.1], [0.2, 3.0], [5.0, 0.0], [-1.0, 0.0]])
    task = _task("t", np.array([[2.0, 0.0], [0.0, 1.0]]), [0, 1, 3], [0, 1, 0])  # image 3 is closer to class 1
    assert components.zero_shot_accuracy(y_NE, task) == pytest.approx(2 / 3)
    assert np.isnan(components.zero_shot_accuracy(y_NE, _task("t", np.eye(2), [], [])))


def test_component_scores_are_mean_norms_of_explicit_contributions(toy):
    s_NHC, u_HCE, _ = toy
    scores = components.component_scores(s_NHC, u_HCE)
    c_NHCE = s_NHC[..., None] * u_HCE[None]
    np.testing.assert_allclose(scores["pair"], np.linalg.norm(c_NHCE, axis=-1).mean(0), rtol=1e-12)
    np.testing.assert_allclose(scores["neuron"], np.linalg.norm(c_NHCE.sum(1), axis=-1).mean(0), rtol=1e-10)
    np.testing.assert_allclose(scores["head"], np.linalg.norm(c_NHCE.sum(2), axis=-1).mean(0), rtol=1e-12)
    assert np.argmax(scores["head"]) == 0  # head 0 has 3x the scale


def _ablation_table(s_NHC, u_HCE, bias_E, fractions, tasks, chunk):
    """The curves of :class:`components.AblationCurves` with the scores and means of all of ``s_NHC``, which
    is fed in chunks of ``chunk`` images (the tasks index into it)."""
    sums = components.ScoreSums(u_HCE)
    for start in range(0, len(s_NHC), chunk):
        sums.add(s_NHC[start : start + chunk])
    curves = components.AblationCurves(u_HCE, bias_E, sums.scores(), sums.s_mean(), fractions, tasks, chunk_size=3)
    for start in range(0, len(s_NHC), chunk):
        curves.add(start, s_NHC[start : start + chunk])
    return curves.table()


def test_ablation_curves_end_points(toy):
    s_NHC, u_HCE, bias_E = toy
    y_NE = pool.reconstruct_output(s_NHC, u_HCE, bias_E)
    rng = np.random.default_rng(1)
    text_KE = rng.standard_normal((4, 6))
    truth = np.argmax(y_NE @ text_KE.T, axis=1)
    truth[::3] = (truth[::3] + 1) % 4  # the model is right on 2 of 3 images
    tasks = [
        _task("a", text_KE, np.arange(0, 40, 2), truth[::2]),
        _task("b", text_KE, np.arange(1, 40, 2), truth[1::2]),
    ]
    table = _ablation_table(s_NHC, u_HCE, bias_E, [0.0, 0.5, 1.0], tasks, chunk=7)
    assert len(table) == 3 * 3 * 2 and set(table["level"]) == set(components.LEVELS)
    full = table[table["fraction"] == 1.0]
    for task in tasks:
        expected = components.zero_shot_accuracy(y_NE, task)
        assert (full.loc[full["task"] == task.name, "accuracy"] == expected).all()
    # nothing kept: every image gets the mean output, so all images are predicted the same class
    mean_class = np.argmax(y_NE.mean(0) @ text_KE.T)
    for task in tasks:
        none = table[(table["fraction"] == 0.0) & (table["task"] == task.name)]
        assert (none["accuracy"] == np.mean(task.truth_M == mean_class)).all()
    half = table[(table["fraction"] == 0.5)].drop_duplicates("level").set_index("level")["n_kept"]
    assert half.to_dict() == {"pair": 8, "neuron": 2, "head": 2}  # round(7.5), round(2.5), round(1.5)


def test_pair_rank_one_and_neuron_directions(toy):
    s_NHC, u_HCE, _ = toy
    table = components.pair_rank_one(s_NHC, u_HCE, [0, 2, 1], [4, 0, 3], top_k=10)
    np.testing.assert_allclose(table["cos_pc_u"], 1.0, atol=1e-12)
    np.testing.assert_allclose(table["explained"], 1.0, atol=1e-12)
    # a neuron reaching the output through 3 heads with independent scalars is not rank 1
    v_KE, explained = components.neuron_directions(s_NHC, u_HCE, [0, 1], top_k=40)
    np.testing.assert_allclose(np.linalg.norm(v_KE, axis=1), 1.0)
    assert (explained < 0.99).all()
    # one head only: rank 1, PC = +-u
    s_one = s_NHC.copy()
    s_one[:, 1:] = 0.0
    v_KE, explained = components.neuron_directions(s_one, u_HCE, [2], top_k=40)
    assert abs(v_KE[0] @ u_HCE[0, 2]) / np.linalg.norm(u_HCE[0, 2]) == pytest.approx(1.0)
    silent = np.zeros_like(s_NHC)
    v_KE, explained = components.neuron_directions(silent, u_HCE, [0], top_k=5)
    assert not v_KE.any() and np.isnan(explained).all()


def test_direction_replacement(toy):
    s_NHC, u_HCE, bias_E = toy
    rng = np.random.default_rng(2)
    keep_HC = rng.random((3, 5)) < 0.5
    s_mean_HC = s_NHC.mean(0)
    heads, neurons = np.nonzero(keep_HC)
    exact = components.pair_outputs_with_directions(
        s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC, heads, neurons, u_HCE[heads, neurons]
    )
    np.testing.assert_allclose(exact, pool.mean_ablate(s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC=s_mean_HC), rtol=1e-12)
    other = rng.standard_normal((len(heads), 6))
    replaced = components.pair_outputs_with_directions(s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC, heads, neurons, other)
    expected = pool.mean_ablate(s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC=s_mean_HC) + s_NHC[:, heads, neurons] @ (
        other - u_HCE[heads, neurons]
    )
    np.testing.assert_allclose(replaced, expected, rtol=1e-10, atol=1e-12)

    # neurons whose contributions are exactly rank 1 (one head) are reproduced by their PC
    s_one = np.zeros_like(s_NHC)
    s_one[:, 0] = s_NHC[:, 0]
    keep_C = np.array([True, False, True, True, False])
    v_KE, _ = components.neuron_directions(s_one, u_HCE, np.flatnonzero(keep_C), top_k=40)
    y = components.neuron_outputs_rank_one(s_one, u_HCE, bias_E, keep_C, s_one.mean(0), v_KE, v_KE)
    np.testing.assert_allclose(
        y, pool.mean_ablate(s_one, u_HCE, bias_E, keep_C, level="neuron"), rtol=1e-10, atol=1e-12
    )
    with pytest.raises(ValueError, match="kept"):
        components.neuron_outputs_rank_one(s_one, u_HCE, bias_E, keep_C, s_one.mean(0), v_KE[:2], v_KE[:2])


@pytest.fixture(scope="module")
def real_pool():
    """open_clip's AttentionPool2d (C = 8, 2 heads, 3 x 3 map, E = 5) in float64, with random
    post-ReLU feature maps of 12 images."""
    import torch
    from open_clip.modified_resnet import AttentionPool2d

    torch.manual_seed(0)
    attnpool = AttentionPool2d(spacial_dim=3, embed_dim=8, num_heads=2, output_dim=5).double().eval()
    features_NCHW = torch.relu(torch.randn(12, 8, 3, 3, dtype=torch.float64))
    x_NTC = pool_forward.attnpool_tokens(features_NCHW, attnpool.positional_embedding.detach()).numpy()
    return attnpool, features_NCHW, x_NTC, pool.attnpool_weights(attnpool)


def test_activation_ablation_equals_the_module_on_mean_ablated_feature_maps(real_pool):
    import torch

    attnpool, features_NCHW, x_NTC, weights = real_pool
    keep_C = np.array([True, False, True, True, False, False, True, False])
    ablated = features_NCHW.clone()
    ablated[:, ~torch.from_numpy(keep_C)] = features_NCHW.mean(0, keepdim=True)[:, ~torch.from_numpy(keep_C)]
    with torch.no_grad():
        expected_NE = attnpool(ablated).numpy()
        model_NE = attnpool(features_NCHW).numpy()
    y_NE = components.activation_ablated_outputs(x_NTC, x_NTC.mean(0), keep_C, weights)
    np.testing.assert_allclose(y_NE, expected_NE, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        components.activation_ablated_outputs(x_NTC, x_NTC.mean(0), np.ones(8, bool), weights), model_NE, rtol=1e-10
    )
    none_NE = components.activation_ablated_outputs(x_NTC, x_NTC.mean(0), np.zeros(8, bool), weights)
    np.testing.assert_allclose(none_NE, np.broadcast_to(none_NE[0], none_NE.shape), rtol=1e-12)
    with pytest.raises(ValueError, match="disagree"):
        components.activation_ablated_outputs(x_NTC, x_NTC.mean(0)[1:], keep_C, weights)


def test_activation_ablation_curve_end_points_and_ranking(real_pool):
    import torch

    attnpool, features_NCHW, x_NTC, weights = real_pool
    with torch.no_grad():
        y_NE = attnpool(features_NCHW).numpy()
    rng = np.random.default_rng(2)
    text_KE = rng.standard_normal((3, 5))
    truth = np.argmax(y_NE @ text_KE.T, axis=1)
    truth[::4] = (truth[::4] + 1) % 3
    tasks = [
        _task("a", text_KE, [0, 2, 4, 6, 8, 10], truth[::2]),
        _task("b", text_KE, [1, 2, 5, 7], truth[[1, 2, 5, 7]]),
    ]
    evaluated, _ = components.evaluated_images(tasks)
    assert evaluated.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 10]
    score_C = np.arange(8.0)[::-1]  # neuron 0 ranks first
    _, local = components.evaluated_images(tasks)
    curve = components.ActivationAblationCurve(x_NTC.mean(0), weights, score_C, [0.0, 0.25, 1.0], local)
    for start in range(0, len(evaluated), 4):
        curve.add(start, x_NTC[evaluated[start : start + 4]])
    table = curve.table()
    assert len(table) == 3 * 2 and set(table["level"]) == {"neuron_activation"}
    assert table.loc[table["fraction"] == 0.25, "n_kept"].tolist() == [2, 2]
    for task in tasks:
        full = table[(table["fraction"] == 1.0) & (table["task"] == task.name)]["accuracy"]
        assert float(full.iloc[0]) == components.zero_shot_accuracy(y_NE, task)
    kept = components.activation_ablated_outputs(x_NTC[evaluated], x_NTC.mean(0), score_C >= 6, weights)
    quarter = table[table["fraction"] == 0.25]["accuracy"].tolist()
    assert quarter == [components.zero_shot_accuracy(kept, task) for task in local]
    short = components.ActivationAblationCurve(x_NTC.mean(0), weights, score_C, [0.5], local)
    short.add(0, x_NTC[evaluated[:8]])
    with pytest.raises(ValueError, match="evaluate image 8 but only images 0..7 were added"):
        short.table()


def test_score_sums_over_chunks_equal_the_scores_of_all_images(toy):
    s_NHC, u_HCE, _ = toy
    sums = components.ScoreSums(u_HCE)
    for start in range(0, len(s_NHC), 7):
        sums.add(s_NHC[start : start + 7])
    whole = components.component_scores(s_NHC, u_HCE)
    for level, score in sums.scores().items():
        np.testing.assert_allclose(score, whole[level], rtol=1e-13)
    np.testing.assert_allclose(sums.s_mean(), s_NHC.mean(axis=0), rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="no images"):
        components.ScoreSums(u_HCE).scores()
    with pytest.raises(ValueError, match="directions"):
        sums.add(s_NHC[:, :2])


def test_zero_shot_counts_over_chunks_equal_the_accuracy_of_all_images(toy):
    s_NHC, u_HCE, bias_E = toy
    y_NE = pool.reconstruct_output(s_NHC, u_HCE, bias_E)
    text_KE = np.random.default_rng(2).standard_normal((4, 6))
    truth = np.argmax(y_NE @ text_KE.T, axis=1)
    truth[::3] = (truth[::3] + 1) % 4
    tasks = [_task("a", text_KE, np.arange(3, 40, 2), truth[3::2]), _task("none", text_KE, [], [])]
    counts = components.ZeroShotCounts(tasks)
    for start in range(0, len(y_NE), 6):
        counts.add(start, y_NE[start : start + 6])
    accuracy = counts.accuracy()
    assert accuracy["a"] == components.zero_shot_accuracy(y_NE, tasks[0]) < 1
    assert np.isnan(accuracy["none"])


def test_direction_replacement_of_pairs_kept_or_not_equals_replacing_u(toy):
    s_NHC, u_HCE, bias_E = toy
    rng = np.random.default_rng(5)
    keep_HC = rng.random((3, 5)) < 0.5
    heads, neurons = np.array([0, 1, 2, 2]), np.array([0, 3, 1, 4])  # some kept, some ablated
    other = rng.standard_normal((4, 6))
    s_mean_HC = s_NHC.mean(0)
    replaced_HCE = u_HCE.copy()
    replaced_HCE[heads, neurons] = other
    expected = pool.mean_ablate(s_NHC, replaced_HCE, bias_E, keep_HC, s_mean_HC=s_mean_HC)
    got = components.pair_outputs_with_directions(s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC, heads, neurons, other)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def _pair_rank_one_in_memory(s_NHC, u_HCE, heads_K, neurons_K, top_k):
    """The rank-1 check as it was before streaming: contributions of all images, top images by ||c||."""
    rows = []
    for h, n in zip(heads_K, neurons_K):
        c_NE = pool.pair_contributions(s_NHC, u_HCE, [h], [n])[:, 0]
        u = u_HCE[h, n]
        row = {"head": int(h), "neuron": int(n), "cos_pc_u": np.nan, "explained": np.nan}
        if np.any(c_NE) and np.any(u):
            pc, _ = pool.top_norm_principal_components(c_NE, top_k=top_k, center=False)
            _, explained = pool.top_norm_principal_components(c_NE, top_k=top_k)
            row |= {"cos_pc_u": abs(float(pc[0] @ u) / float(np.linalg.norm(u))), "explained": float(explained[0])}
        rows.append(row)
    return pd.DataFrame(rows)


def _neuron_directions_in_memory(s_NHC, u_HCE, neurons_K, top_k):
    """The neuron PCs as they were before streaming."""
    v_KE = np.zeros((len(neurons_K), u_HCE.shape[2]))
    explained_K = np.full(len(neurons_K), np.nan)
    for k, n in enumerate(neurons_K):
        c_NE = pool.neuron_contributions(s_NHC, u_HCE, [n])[:, 0]
        if np.any(c_NE):
            pc, _ = pool.top_norm_principal_components(c_NE, top_k=top_k, center=False)
            _, explained = pool.top_norm_principal_components(c_NE, top_k=top_k)
            v_KE[k], explained_K[k] = pc[0], explained[0]
    return v_KE, explained_K


@pytest.fixture(scope="module")
def tied_toy(toy):
    """The toy with tied norms (images 10-19 repeat 0-9, image 25 is -image 5), a silent pair (head 1,
    neuron 2) and a silent neuron (3), and the top-k selection that argsort over all images makes."""
    s_NHC, u_HCE, _ = toy
    s = s_NHC.copy()
    s[10:20] = s[0:10]
    s[25] = -s[5]
    s[:, 1, 2] = 0.0
    s[:, :, 3] = 0.0
    return s, u_HCE


@pytest.mark.parametrize("chunk_size", [1, 7, 40])
@pytest.mark.parametrize("top_k", [5, 12, 60])
def test_top_contributions_over_chunks_equal_the_in_memory_rank_one_check(tied_toy, chunk_size, top_k):
    s_NHC, u_HCE = tied_toy
    heads, neurons = np.array([0, 2, 1, 0, 1]), np.array([4, 0, 2, 3, 0])
    neurons_K = np.array([0, 3, 1, 4, 2])
    chunks = [(start, s_NHC[start : start + chunk_size]) for start in range(0, len(s_NHC), chunk_size)]
    top = components.top_contributions(chunks, u_HCE, heads, neurons, neurons_K, top_k)
    # the images kept are those of a stable argsort over all images, in its order
    norm_NP = np.abs(s_NHC[:, heads, neurons]) * pool.direction_norms(u_HCE)[heads, neurons]
    norm_NK = pool.neuron_contribution_norms(s_NHC[:, :, neurons_K], pool.neuron_gram(u_HCE[:, neurons_K]))
    expected_P = np.argsort(-norm_NP, axis=0, kind="stable")[:top_k]
    expected_K = np.argsort(-norm_NK, axis=0, kind="stable")[:top_k]
    np.testing.assert_array_equal(top._pairs[1], expected_P)
    np.testing.assert_array_equal(top._neurons[1], expected_K)
    table = top.pair_rank_one()
    expected = _pair_rank_one_in_memory(s_NHC, u_HCE, heads, neurons, top_k)
    pd.testing.assert_frame_equal(table, expected, rtol=1e-12, atol=1e-12)
    assert table["cos_pc_u"].isna().tolist() == [False, False, True, True, False]  # pair (1, 2), neuron 3
    v_KE, explained_K = top.neuron_directions()
    v_expected, explained_expected = _neuron_directions_in_memory(s_NHC, u_HCE, neurons_K, top_k)
    np.testing.assert_allclose(v_KE, v_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(explained_K, explained_expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(explained_K).tolist() == [False, True, False, False, False] and not v_KE[1].any()
    # the in-memory functions are the streamed ones on one chunk
    pd.testing.assert_frame_equal(components.pair_rank_one(s_NHC, u_HCE, heads, neurons, top_k), expected, rtol=1e-12)
    np.testing.assert_allclose(components.neuron_directions(s_NHC, u_HCE, neurons_K, top_k)[0], v_KE, rtol=1e-12)


def test_top_contributions_checks_its_arguments(toy):
    s_NHC, u_HCE, _ = toy
    with pytest.raises(ValueError, match="top_k"):
        components.TopContributions(u_HCE, [0], [0], [0], top_k=0)
    with pytest.raises(ValueError, match="neurons_P has"):
        components.TopContributions(u_HCE, [0, 1], [0], [0])
    with pytest.raises(ValueError, match="neurons_K must lie"):
        components.TopContributions(u_HCE, [0], [0], [5])
    with pytest.raises(ValueError, match="heads_P must lie"):
        components.TopContributions(u_HCE, [-1], [0], [0])
    with pytest.raises(ValueError, match="directions"):
        components.TopContributions(u_HCE, [0], [0], [0]).add(0, s_NHC[:, :2])
    # nothing added: every pair and neuron is silent
    empty = components.TopContributions(u_HCE, [0], [1], [2])
    assert empty.pair_rank_one()["cos_pc_u"].isna().all() and np.isnan(empty.neuron_directions()[1]).all()


def _in_memory_curves(y_by_keep, keeps, tasks):
    """The rows the curves had when every evaluated image's output was computed at once (the oracle)."""
    return pd.DataFrame(
        [
            {
                "level": level,
                "fraction": fraction,
                "n_kept": int(keep.sum()),
                "n_components": keep.size,
                "task": task.name,
                "accuracy": components.zero_shot_accuracy(y_NE, task),
            }
            for (level, fraction, keep), y_NE in zip(keeps, y_by_keep)
            for task in tasks
        ]
    )


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_ablation_curves_over_chunks_equal_the_curves_of_all_images_at_once(toy, chunk):
    """Streamed curves = in-memory curves (scores and means of all images, ablated outputs of all evaluated
    images, one accuracy per task): the same per-image decisions, so the accuracies are exactly equal."""
    s_NHC, u_HCE, bias_E = toy
    y_NE = pool.reconstruct_output(s_NHC, u_HCE, bias_E)
    text_KE = np.random.default_rng(3).standard_normal((4, 6))
    truth = np.argmax(y_NE @ text_KE.T, axis=1)
    truth[::3] = (truth[::3] + 1) % 4
    tasks = [_task("a", text_KE, np.arange(0, 40, 3), truth[::3]), _task("b", text_KE, [1, 3, 39], truth[[1, 3, 39]])]
    fractions = [0.0, 0.2, 0.5, 0.8, 1.0]
    scores, s_mean_HC = components.component_scores(s_NHC, u_HCE), s_NHC.mean(0)
    evaluated, local = components.evaluated_images(tasks)
    keeps = [(lv, f, pool.top_fraction_mask(scores[lv], f)) for lv in components.LEVELS for f in fractions]
    y_by_keep = [
        pool.mean_ablate(s_NHC[evaluated], u_HCE, bias_E, keep, level=lv, s_mean_HC=s_mean_HC) for lv, _, keep in keeps
    ]
    expected = _in_memory_curves(y_by_keep, keeps, local)
    sums = components.ScoreSums(u_HCE)
    for start in range(0, 40, chunk):
        sums.add(s_NHC[start : start + chunk])
    curves = components.AblationCurves(u_HCE, bias_E, sums.scores(), sums.s_mean(), fractions, local, chunk)
    for start in range(0, len(evaluated), chunk):
        curves.add(start, s_NHC[evaluated[start : start + chunk]])
    pd.testing.assert_frame_equal(curves.table(), expected)
    with pytest.raises(ValueError, match="s_mean_HC"):
        components.AblationCurves(u_HCE, bias_E, scores, s_mean_HC[1:], fractions, local)


@pytest.mark.parametrize("chunk", [1, 5, 12])
def test_activation_ablation_curve_over_chunks_equals_the_curve_of_all_images_at_once(real_pool, chunk):
    _, _, x_NTC, weights = real_pool
    y_NE = components.activation_ablated_outputs(x_NTC, x_NTC.mean(0), np.ones(8, bool), weights)
    text_KE = np.random.default_rng(4).standard_normal((3, 5))
    truth = np.argmax(y_NE @ text_KE.T, axis=1)
    truth[::4] = (truth[::4] + 1) % 3
    tasks = [_task("a", text_KE, np.arange(12), truth), _task("b", text_KE, [3, 11], truth[[3, 11]])]
    score_C = x_NTC.mean(axis=(0, 1))
    fractions = [0.0, 0.25, 0.5, 1.0]
    keeps = [("neuron_activation", f, pool.top_fraction_mask(score_C, f)) for f in fractions]
    y_by_keep = [components.activation_ablated_outputs(x_NTC, x_NTC.mean(0), keep, weights) for _, _, keep in keeps]
    curve = components.ActivationAblationCurve(x_NTC.mean(0), weights, score_C, fractions, tasks)
    for start in range(0, 12, chunk):
        curve.add(start, x_NTC[start : start + chunk])
    pd.testing.assert_frame_equal(curve.table(), _in_memory_curves(y_by_keep, keeps, tasks))


# --- the class task of a natural-image dataset (methods.md Sec. 5.2) ----------------------------------------


def _photos(labels):
    """A natural-image dataset of kind imagefolder with classes "cat" and "dog" and these labels (-1: none)."""
    return natural_stand_in("imagefolder", labels=labels, class_names=("cat", "dog"))


def test_class_task_is_top1_over_the_classes_of_the_labelled_images():
    """Hand case, H = 1, C = 2, E = 2: u = e1, e2, so y = (s_0, s_1) and class k's column of the classifier is e_k
    (class 0 "cat" wins iff s_0 > s_1). Images 0..3: s = (3, 0), (1, 1.5), (2, 0), (0.9, 1) with labels cat, cat,
    none, cat. Unablated, image 0 is right, images 1 and 3 are wrong (s_1 > s_0): 1/3; image 2 is not scored.
    Mean scalars over all four images: 1.725 and 0.625, so neuron 0 ranks first; keeping it alone (fraction 0.5)
    puts s_1 = 0.625 below every s_0 of a labelled image: all three are cat, 3/3. Keeping none: y is the mean
    (1.725, 0.625) for every image, cat, 3/3 too."""
    s_NHC = np.array([[[3.0, 0.0]], [[1.0, 1.5]], [[2.0, 0.0]], [[0.9, 1.0]]])
    u_HCE = np.eye(2)[None]
    weights_EK = np.array([[1.0, 0.0], [0.0, 1.0]])
    task = components.class_task(_photos([0, 0, -1, 0]), weights_EK)
    assert task.name == components.CLASS_TASK == "class" and task.classes == ("cat", "dog")
    np.testing.assert_array_equal(task.images, [0, 1, 3])
    np.testing.assert_array_equal(task.truth_M, [0, 0, 0])
    np.testing.assert_array_equal(task.text_KE, weights_EK.T)
    y_NE = pool.mean_ablate(s_NHC, u_HCE, np.zeros(2), np.ones(2, dtype=bool), level="neuron", s_mean_HC=s_NHC.mean(0))
    assert components.zero_shot_accuracy(y_NE, task) == pytest.approx(1 / 3)
    evaluated, local = components.evaluated_images([task])
    scores = components.component_scores(s_NHC, u_HCE)
    np.testing.assert_allclose(scores["neuron"], [1.725, 0.625])
    curves = components.AblationCurves(u_HCE, np.zeros(2), scores, s_NHC.mean(0), [0.0, 0.5, 1.0], local, 2)
    curves.add(0, s_NHC[evaluated])
    table = curves.table()
    assert set(table["task"]) == {"class"}
    for level in ("pair", "neuron"):
        rows = table[table["level"] == level].set_index("fraction")
        assert rows["accuracy"].to_dict() == pytest.approx({0.0: 1.0, 0.5: 1.0, 1.0: 1 / 3})
        assert rows["n_kept"].to_dict() == {0.0: 0, 0.5: 1, 1.0: 2}
    # Label image 1 dog instead: unablated, images 0 and 1 are right (2/3); keeping neuron 0 alone turns image 1
    # into a cat and image 3 too, so images 0 and 3 are right (2/3, other images).
    task = components.class_task(_photos([0, 1, -1, 0]), weights_EK)
    correct = components.ZeroShotCounts([task])
    correct.add(0, y_NE)
    assert correct.accuracy() == {"class": pytest.approx(2 / 3)}
    kept_NE = pool.mean_ablate(
        s_NHC, u_HCE, np.zeros(2), np.array([True, False]), level="neuron", s_mean_HC=s_NHC.mean(0)
    )
    np.testing.assert_array_equal(components._correct(kept_NE[task.images], task.text_KE, task.truth_M), [1, 0, 1])
    np.testing.assert_array_equal(components._correct(y_NE[task.images], task.text_KE, task.truth_M), [1, 1, 0])


def test_class_task_checks_the_dataset_and_the_classifier():
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(E, 2\)"):
        components.class_task(_photos([0, 1]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="no image of the dataset is labelled"):
        components.class_task(_photos([-1, -1]), np.eye(2))
    with pytest.raises(ValueError, match=r"labels must lie in -1..1"):
        components.class_task(_photos([0, 2]), np.eye(2))
    with pytest.raises(ValueError, match="has no classes"):
        components.class_task(natural_stand_in("imagefolder", labels=[0]), np.eye(2))


def test_dataset_tasks_score_a_natural_dataset_over_its_classes_only():
    data = _photos([1, 0])
    (task,) = components.dataset_tasks(data, None, np.eye(2))
    assert task.name == "class" and task.truth_M.tolist() == [1, 0]
    with pytest.raises(ValueError, match="its zero-shot classifier .* is needed"):
        components.dataset_tasks(data, None, None)
    shapes = type(data)(spec={"kind": "shapes"})
    with pytest.raises(ValueError, match="a shapes dataset is scored on its attribute tasks"):
        components.dataset_tasks(shapes, None, np.eye(2))
