import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipmech import artefacts
from clipmech.sae.model import TopKSAE, geometric_median, load_sae, save_sae


def _sae(d=6, n=20, k=3, seed=0):
    sae = TopKSAE(d, n, k, seed=seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.5, 0.5, n))
        sae.b_pre.copy_(torch.linspace(1.0, 2.0, d))
    return sae


def test_tied_init_with_unit_norm_decoder_columns():
    sae = TopKSAE(8, 32, 4, seed=3)
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(32))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert sae.W_dec.shape == (8, 32) and sae.W_enc.shape == (32, 8)
    assert sae.b_enc.abs().sum() == 0 and sae.b_pre.abs().sum() == 0
    assert torch.equal(TopKSAE(8, 32, 4, seed=3).W_dec, sae.W_dec)
    assert not torch.equal(TopKSAE(8, 32, 4, seed=4).W_dec, sae.W_dec)


def test_encode_decode_forward_agree_with_the_formulas():
    sae = _sae()
    x = torch.randn(10, 6, dtype=torch.float32)
    pre = sae.pre_activations(x)
    torch.testing.assert_close(pre, (x - sae.b_pre) @ sae.W_enc.T + sae.b_enc, rtol=0, atol=1e-5)
    z = sae.encode(x)
    # ReLU(TopK): the k largest pre-activations, negative ones zeroed, everything else zero.
    expected = torch.zeros_like(pre)
    top = pre.topk(3, dim=1)
    expected.scatter_(1, top.indices, F.relu(top.values))
    torch.testing.assert_close(z, expected)
    assert ((z > 0).sum(dim=1) <= 3).all()
    x_hat, z_forward = sae(x)
    torch.testing.assert_close(z_forward, z)
    torch.testing.assert_close(x_hat, z @ sae.W_dec.T + sae.b_pre, rtol=0, atol=1e-5)
    torch.testing.assert_close(sae.decode(z), x_hat, rtol=0, atol=1e-5)


@pytest.mark.parametrize("k_aux", [0, 4, 30])
def test_sparse_backward_equals_autograd_of_the_dense_formula(k_aux):
    """encode_sparse's gradients are those of ReLU(TopK) of W_enc (x - b_pre) + b_enc, AuxK latents included
    (k_aux 30 > the 12 dead latents: the live ones fill in at 0)."""
    sae = _sae()
    x = torch.randn(7, 6, requires_grad=True)
    dead = torch.arange(20) % 5 < 3
    # A loss weighting each (input, latent) pair on its own, whatever order topk returns them in.
    weights, aux_weights = torch.randn(7, 20), torch.randn(7, 20)
    values, indices, aux_values, aux_indices = sae.encode_sparse(x, dead, k_aux)
    ((values * weights.gather(1, indices)).sum() + (aux_values * aux_weights.gather(1, aux_indices)).sum()).backward()

    plain = _sae()
    x_plain = x.detach().clone().requires_grad_(True)
    pre = F.linear(x_plain - plain.b_pre, plain.W_enc, plain.b_enc)
    top = pre.topk(3, dim=1)
    loss = (F.relu(top.values) * weights.gather(1, top.indices)).sum()
    if k_aux:
        aux = pre.masked_fill(~dead, -torch.inf).topk(min(k_aux, 20), dim=1)
        loss = loss + (F.relu(aux.values) * aux_weights.gather(1, aux.indices)).sum()
        for row in range(7):  # the same dead latents (ties among the live ones at -inf aside)
            finite = aux.values[row] > -torch.inf
            assert set(aux.indices[row][finite].tolist()) == set(aux_indices[row][dead[aux_indices[row]]].tolist())
        assert dead[aux_indices[aux_values > 0]].all()
    loss.backward()
    assert torch.equal(top.indices.sort(dim=1).values, indices.sort(dim=1).values)
    for name in ("b_pre", "W_enc", "b_enc"):
        torch.testing.assert_close(getattr(sae, name).grad, getattr(plain, name).grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_plain.grad, rtol=1e-5, atol=1e-5)
    assert aux_values.shape == (7, min(k_aux, 20)) and values.shape == (7, 3)
    assert sae.encode_sparse(x, None, 4)[2].shape == (7, 0)


def test_sparse_backward_in_slices(monkeypatch):
    """The encoder-weight gradient summed slice by slice (a bounded buffer) equals it in one piece."""
    x = torch.randn(9, 6)
    grads = []
    for elements in (2**24, 40):
        monkeypatch.setattr("clipmech.sae.model._SparseTopK.CHUNK_ELEMENTS", elements)
        sae = _sae()
        sae.encode_sparse(x, torch.ones(20, dtype=torch.bool), 2)[0].sum().backward()
        grads.append(sae.W_enc.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_remove_parallel_grad_leaves_the_orthogonal_part():
    sae = _sae()
    sae.W_dec.grad = torch.randn(6, 20)
    before = sae.W_dec.grad.clone()
    sae.remove_parallel_grad()
    after = sae.W_dec.grad
    torch.testing.assert_close((after * sae.W_dec).sum(dim=0), torch.zeros(20), rtol=0, atol=1e-6)
    # What was removed is parallel to each column: before - after = c_j w_j.
    removed = before - after
    coefficient = (before * sae.W_dec).sum(dim=0)
    torch.testing.assert_close(removed, sae.W_dec * coefficient, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="no gradient"):
        TopKSAE(2, 3, 1).remove_parallel_grad()


def test_normalize_decoder():
    sae = _sae()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 3, 20))
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(20))


def test_geometric_median():
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    torch.testing.assert_close(geometric_median(square), torch.tensor([1.0, 1.0]))
    # Robust where the mean is not: one far outlier among points around the origin.
    rng = np.random.default_rng(0)
    cloud = torch.tensor(rng.standard_normal((201, 3)), dtype=torch.float32)
    cloud[0] = 1000.0
    assert geometric_median(cloud).norm() < 0.3 < cloud.mean(dim=0).norm()
    with pytest.raises(ValueError, match="N >= 1"):
        geometric_median(torch.zeros(0, 3))


def test_init_from_data_sets_b_pre_and_the_encoder_scale():
    sae = TopKSAE(2, 4, 1)
    sample = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    tied = sae.W_enc.detach().clone()
    sae.init_from_data(sample)
    torch.testing.assert_close(sae.b_pre.detach(), torch.tensor([1.0, 1.0]))
    # Still tied up to one scale: the least-squares one, so no other scale of the encoder fits better.
    scale = sae.W_enc.detach() / tied
    torch.testing.assert_close(scale, torch.full_like(scale, float(scale[0, 0])))
    with torch.no_grad():
        centred, decoded = sample - sae.b_pre, sae(sample)[0] - sae.b_pre
        torch.testing.assert_close((centred * decoded).sum(), decoded.square().sum())
        errors = [(centred - factor * decoded).square().sum() for factor in (0.9, 1.0, 1.1)]
    assert errors[1] < errors[0] and errors[1] < errors[2]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        sae.init_from_data(torch.zeros(3, 5))


def test_invalid_sizes():
    with pytest.raises(ValueError, match="exceeds n_latents"):
        TopKSAE(4, 3, 5)
    with pytest.raises(ValueError, match="d must be a positive integer"):
        TopKSAE(0, 3, 1)


def test_save_and_load_round_trip(tmp_path):
    sae = _sae()
    path = tmp_path / "sub" / "sae.pt"
    save_sae(path, sae, {"site": "visual.blocks.1.hook_resid_pre", "k_aux": None})
    loaded, meta = load_sae(path)
    assert meta == {"site": "visual.blocks.1.hook_resid_pre", "k_aux": None}
    assert (loaded.d, loaded.n_latents, loaded.k) == (6, 20, 3) and not loaded.training
    for name, tensor in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert loaded.W_dec.T.is_contiguous()
    x = torch.randn(4, 6)
    torch.testing.assert_close(loaded(x)[0], sae(x)[0])
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_load_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SAE file"):
        load_sae(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="no sha256 record.*train_sae"):
        load_sae(garbage)
    path = tmp_path / "sae.pt"
    save_sae(path, _sae(), {})
    foreign = tmp_path / "foreign.pt"
    artefacts.save_torch(foreign, {"state_dict": {}}, rule="train_sae")
    with pytest.raises(ValueError, match="not the keys"):
        load_sae(foreign)
    mismatched = tmp_path / "mismatched.pt"
    record = torch.load(path, weights_only=True)
    record["n_latents"] = 21
    artefacts.save_torch(mismatched, record, rule="train_sae")
    with pytest.raises(ValueError, match="does not fit"):
        load_sae(mismatched)


def test_load_refuses_a_garbled_or_truncated_file(tmp_path):
    path = tmp_path / "sae.pt"
    save_sae(path, _sae(), {})
    assert artefacts.record_path(path).is_file()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"sae\.pt is corrupt: it was garbled.*records.*rule train_sae") as info:
        load_sae(path)
    assert artefacts.file_sha256(path) in str(info.value)
    save_sae(path, _sae(), {})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"sae\.pt is corrupt: it is truncated \(200 of the \d+ bytes.*train_sae"):
        load_sae(path)


def test_load_refuses_non_finite_weights(tmp_path):
    sae = _sae()
    with torch.no_grad():
        sae.b_enc[0] = float("nan")
    save_sae(tmp_path / "sae.pt", sae, {})
    with pytest.raises(ValueError, match="non-finite weights in b_enc"):
        load_sae(tmp_path / "sae.pt")
