"""Tests of clipmech.decomposition.omp against scikit-learn's orthogonal_mp_gram and OMP invariants."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import orthogonal_mp_gram
from threadpoolctl import threadpool_limits

from clipmech.decomposition.omp import omp, omp_gram, reconstruct


@pytest.fixture(autouse=True)
def _one_thread():
    # one thread: on a shared, oversubscribed machine two OpenMP threads can be 30x slower
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(previous)


def _random_problem(seed, n_atoms=500, dim=64, n_targets=200, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    atoms_AE = torch.randn(n_atoms, dim, generator=gen, dtype=torch.float64)
    atoms_AE /= atoms_AE.norm(dim=1, keepdim=True)
    targets_NE = torch.randn(n_targets, dim, generator=gen, dtype=torch.float64)
    return atoms_AE.to(dtype), targets_NE.to(dtype)


def _sklearn_path(atoms_AE, targets_NE, m):
    """scikit-learn's OMP: ordered supports (lists) and final coefficients (N, A) as numpy."""
    gram = (atoms_AE @ atoms_AE.T).numpy()
    xy = (targets_NE @ atoms_AE.T).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "ended prematurely"
        path_ANK = orthogonal_mp_gram(gram, xy.T, n_nonzero_coefs=m, return_path=True)
    path_ANK = path_ANK.reshape(gram.shape[0], xy.shape[0], -1)
    supports = []
    for i in range(xy.shape[0]):
        order = []
        for k in range(path_ANK.shape[2]):
            new = set(np.flatnonzero(path_ANK[:, i, k])) - set(order)
            order.extend(sorted(new))  # one new atom per step
        supports.append(order)
    return supports, path_ANK


def _agreement(result, sk_supports):
    ours = [[a for a in row if a >= 0] for row in result.support.tolist()]
    agree = np.array([o == s for o, s in zip(ours, sk_supports)])
    return agree


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_sklearn_on_random_dictionary(dtype):
    atoms_AE, targets_NE = _random_problem(seed=0, dtype=dtype)
    m = 16
    result = omp(atoms_AE, targets_NE, m, batch_size=64)
    sk_supports, path_ANK = _sklearn_path(atoms_AE, targets_NE, m)

    agree_N = _agreement(result, sk_supports)
    assert agree_N.mean() >= 0.99
    assert result.support.dtype == torch.int64 and result.coef.dtype == dtype
    assert (result.n_active == m).all()

    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for i in np.flatnonzero(agree_N):
        sk_coef = path_ANK[result.support[i].numpy(), i, -1]
        np.testing.assert_allclose(result.coef[i].numpy(), sk_coef, rtol=tol, atol=tol)


def test_coef_path_matches_sklearn_path():
    atoms_AE, targets_NE = _random_problem(seed=1, n_targets=20)
    m = 8
    result = omp(atoms_AE, targets_NE, m, return_path=True)
    sk_supports, path_ANK = _sklearn_path(atoms_AE, targets_NE, m)
    assert _agreement(result, sk_supports).all()
    for i in range(targets_NE.shape[0]):
        sk_path_KM = path_ANK[result.support[i].numpy(), i, :].T  # (step, slot)
        np.testing.assert_allclose(result.coef_path[i].numpy(), sk_path_KM, atol=1e-10)
    torch.testing.assert_close(result.coef_path[:, -1], result.coef)


def test_recovers_true_support_of_exact_sparse_combinations():
    atoms_AE, _ = _random_problem(seed=2)
    gen = torch.Generator().manual_seed(3)
    n_targets, k = 200, 4
    true_NK = torch.stack([torch.randperm(500, generator=gen)[:k] for _ in range(n_targets)])
    magnitude_NK = 1.0 + torch.rand(n_targets, k, generator=gen, dtype=torch.float64)
    sign_NK = torch.where(torch.rand(n_targets, k, generator=gen) < 0.5, -1.0, 1.0)
    true_coef_NK = (magnitude_NK * sign_NK).to(torch.float64)
    targets_NE = reconstruct(true_NK, true_coef_NK, atoms_AE)

    result = omp(atoms_AE, targets_NE, k)
    for i in range(n_targets):
        order = torch.argsort(true_NK[i])
        got = torch.argsort(result.support[i])
        assert torch.equal(result.support[i][got], true_NK[i][order]), f"target {i}"
        torch.testing.assert_close(result.coef[i][got], true_coef_NK[i][order])

    sk_supports, _ = _sklearn_path(atoms_AE, targets_NE, k)
    assert _agreement(result, sk_supports).mean() >= 0.99


def test_stops_early_when_residual_vanishes():
    atoms_AE, _ = _random_problem(seed=4)
    support_true = torch.tensor([[3, 70, 111, 400]])
    coef_true = torch.tensor([[1.5, -2.0, 1.2, -1.1]], dtype=torch.float64)
    targets_NE = reconstruct(support_true, coef_true, atoms_AE)
    m = 10
    result = omp(atoms_AE, targets_NE, m)

    assert result.n_active.tolist() == [4]
    assert sorted(result.support[0, :4].tolist()) == [3, 70, 111, 400]
    assert result.support[0, 4:].tolist() == [-1] * (m - 4)
    assert (result.coef[0, 4:] == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, n_iter = orthogonal_mp_gram(
            (atoms_AE @ atoms_AE.T).numpy(),
            (targets_NE @ atoms_AE.T).numpy()[0],
            n_nonzero_coefs=m,
            return_n_iter=True,
        )
    assert n_iter == 4


def test_stops_when_more_atoms_than_dimensions():
    atoms_AE, targets_NE = _random_problem(seed=5, n_atoms=6, dim=3, n_targets=10)
    result = omp(atoms_AE, targets_NE, 5)
    assert (result.n_active == 3).all()
    assert torch.isfinite(result.coef).all()
    approx_NE = reconstruct(result.support, result.coef, atoms_AE)
    torch.testing.assert_close(approx_NE, targets_NE)


def test_early_termination_matches_sklearn_in_float32_when_span_fills():
    # m = 20 > E = 16: the last steps are decided by rounding-level quantities, which is where
    # the stopping rules matter; sklearn's n_iter varies between 14 and 16 here
    atoms_AE, targets_NE = _random_problem(seed=11, n_atoms=200, dim=16, n_targets=100)
    atoms_AE, targets_NE = atoms_AE.float(), targets_NE.float()
    result = omp(atoms_AE, targets_NE, 20)
    gram, xy = (atoms_AE @ atoms_AE.T).numpy(), (targets_NE @ atoms_AE.T).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_iter = np.array([orthogonal_mp_gram(gram, row, n_nonzero_coefs=20, return_n_iter=True)[1] for row in xy])
    assert (n_iter < 16).any()
    assert (result.n_active.numpy() == n_iter).mean() >= 0.99


def test_never_selects_an_atom_twice():
    # Atom 0 has squared norm 7 and a huge correlation; after its refit, rounding leaves it a
    # residual correlation ~1e-7 that can exceed atom 1's 2e-8, and the squared distance of
    # atom 0 to its own span rounds to +1.8e-15 > eps. Without scikit-learn's rule "stop when
    # the argmax is an atom already selected" atom 0 would be added a second time (it is, for
    # about half of these targets, on x86 CPUs when the rule is removed).
    gram_AA = torch.tensor([[7.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    big_N = 1e9 * (1.0 + torch.arange(200, dtype=torch.float64) / 997)
    xy_NA = torch.stack([big_N, torch.full_like(big_N, 2e-8)], dim=1)
    result = omp_gram(gram_AA, xy_NA, 2)
    assert (result.support[:, 0] == 0).all()
    assert set(result.support[:, 1].tolist()) <= {-1, 1}
    assert torch.equal(result.n_active, (result.support >= 0).sum(1))


def test_stops_on_linearly_dependent_atom():
    # atom 1 is atom 0 tilted by 1e-9: its squared distance to span(atom 0) is ~1e-18 < eps,
    # while the target's large e2 component gives atom 0 a clear residual correlation
    atoms_AE = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1e-9, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    atoms_AE /= atoms_AE.norm(dim=1, keepdim=True)
    targets_NE = torch.tensor([[1.0, 1e6, 0.0]], dtype=torch.float64)
    result = omp(atoms_AE, targets_NE, 3)
    assert result.support.tolist() == [[1, -1, -1]]
    assert result.n_active.tolist() == [1]
    assert torch.isfinite(result.coef).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, n_iter = orthogonal_mp_gram(
            (atoms_AE @ atoms_AE.T).numpy(),
            (targets_NE @ atoms_AE.T).numpy()[0],
            n_nonzero_coefs=3,
            return_n_iter=True,
        )
    assert n_iter == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_residual_orthogonal_to_selected_atoms(dtype):
    atoms_AE, targets_NE = _random_problem(seed=6, dtype=dtype)
    result = omp(atoms_AE, targets_NE, 16)
    residual_NE = targets_NE - reconstruct(result.support, result.coef, atoms_AE)
    selected_NME = atoms_AE[result.support]
    inner_NM = torch.einsum("nme,ne->nm", selected_NME, residual_NE)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert inner_NM.abs().max() <= tol * targets_NE.norm(dim=1).max()
    # and the residual is not trivially zero: 16 atoms cannot span 64 dimensions
    assert residual_NE.norm(dim=1).min() > 0.1


def test_batch_size_does_not_change_result():
    atoms_AE, targets_NE = _random_problem(seed=7, n_targets=50)
    whole = omp(atoms_AE, targets_NE, 12, batch_size=1000)
    pieces = omp(atoms_AE, targets_NE, 12, batch_size=7)
    assert torch.equal(whole.support, pieces.support)
    torch.testing.assert_close(whole.coef, pieces.coef, rtol=1e-12, atol=1e-12)


def test_omp_gram_equals_omp_and_ties_go_to_lowest_index():
    atoms_AE = torch.eye(4, dtype=torch.float64)
    targets_NE = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0]], dtype=torch.float64)
    result = omp(atoms_AE, targets_NE, 2)
    assert result.support.tolist() == [[0, 1], [1, 3]]
    gram_result = omp_gram(atoms_AE @ atoms_AE.T, targets_NE @ atoms_AE.T, 2)
    assert torch.equal(gram_result.support, result.support)
    torch.testing.assert_close(gram_result.coef, result.coef)


def test_reconstruct_matches_explicit_sum():
    atoms_AE, _ = _random_problem(seed=8, n_atoms=20, dim=5)
    support_NM = torch.tensor([[4, 0, -1], [19, 3, 7]])
    coef_NM = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.25, -3.0]], dtype=torch.float64)
    expected_NE = torch.stack(
        [
            2.0 * atoms_AE[4] - atoms_AE[0],
            0.5 * atoms_AE[19] + 0.25 * atoms_AE[3] - 3.0 * atoms_AE[7],
        ]
    )
    torch.testing.assert_close(reconstruct(support_NM, coef_NM, atoms_AE), expected_NE)


def test_empty_targets():
    atoms_AE, targets_NE = _random_problem(seed=9, n_atoms=10, dim=4, n_targets=0)
    result = omp(atoms_AE, targets_NE, 3, return_path=True)
    assert result.support.shape == (0, 3) and result.coef_path.shape == (0, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_nonzero": 11}, ValueError, r"n_nonzero must be in \[1, n_atoms=10\]"),
        ({"n_nonzero": 0}, ValueError, "n_nonzero must be in"),
        ({"n_nonzero": 2.0}, TypeError, "n_nonzero must be an int"),
        ({"targets_NE": torch.zeros(3, 5, dtype=torch.float64)}, ValueError, r"\(N, E=4\)"),
        ({"targets_NE": torch.zeros(3, 4, dtype=torch.float32)}, TypeError, "float64"),
        ({"dictionary_AE": torch.zeros(10, 4, dtype=torch.int64)}, TypeError, "float32 or"),
        ({"gram_AA": torch.zeros(9, 9, dtype=torch.float64)}, ValueError, r"\(10, 10\)"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ],
)
def test_bad_input_errors(kwargs, error, match):
    args = {
        "dictionary_AE": torch.randn(10, 4, dtype=torch.float64),
        "targets_NE": torch.randn(3, 4, dtype=torch.float64),
        "n_nonzero": 3,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        omp(**args)


def test_bad_gram_inputs():
    with pytest.raises(ValueError, match="gram_AA must be a square"):
        omp_gram(torch.zeros(4, 5), torch.zeros(2, 5), 2)
    with pytest.raises(ValueError, match=r"xy_NA must have shape \(N, A=4\)"):
        omp_gram(torch.zeros(4, 4), torch.zeros(2, 5), 2)
    with pytest.raises(ValueError, match=r"support_NM entries must be in \[-1, A=4\)"):
        reconstruct(torch.tensor([[4]]), torch.ones(1, 1), torch.zeros(4, 3))
    with pytest.raises(TypeError, match="support_NM must have dtype int64"):
        reconstruct(torch.tensor([[1.0]]), torch.ones(1, 1), torch.zeros(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    atoms_AE, targets_NE = _random_problem(seed=10)
    cpu = omp(atoms_AE, targets_NE, 16)
    gpu = omp(atoms_AE.cuda(), targets_NE.cuda(), 16)
    assert gpu.support.device.type == "cuda"
    assert (gpu.support.cpu() == cpu.support).all(dim=1).float().mean() >= 0.99
