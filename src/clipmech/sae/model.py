"""The top-k sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"; methods.md Sec. 7).

Model, for an input x of width d and n latents::

    pre   = W_enc (x - b_pre) + b_enc                  (n,)
    z     = ReLU(TopK_k(pre))                          (n,), at most k nonzero
    x_hat = W_dec z + b_pre                            (d,)

TopK keeps the k largest pre-activations and zeroes the others; the ReLU then zeroes the negative
ones kept (so L0 <= k; ReLU before TopK, EleutherAI sparsify's order, gives the same z). The columns
of W_dec (d, n) have unit norm: :meth:`TopKSAE.normalize_decoder` restores it after every optimiser
step and :meth:`TopKSAE.remove_parallel_grad` removes, before the step, the gradient component of
each column parallel to it (the component that would only change its norm).

Initialisation: the decoder columns are seeded Gaussian directions normalised to unit norm, the
encoder is their transpose (tied init, W_enc = W_dec^T), b_enc = 0, and b_pre is set from a data
sample by :meth:`TopKSAE.init_b_pre`: the **geometric median** (a few Weiszfeld iterations,
:func:`geometric_median`), the choice of Gao et al. and OpenAI's reference implementation
(EleutherAI's sparsify uses the sample mean instead).

Memory layout: ``W_dec`` is a (d, n) parameter stored as the transpose of a contiguous (n, d) tensor,
so that ``W_dec.T``, whose rows the sparse decoder (:meth:`TopKSAE.decode_sparse`, an
``embedding_bag`` over the k active latents) gathers, is contiguous; the state dict, Adam's moments
and ``.to(device)`` keep that layout.

File format (:func:`save_sae`, :func:`load_sae`): ``torch.save`` of ``{"state_dict", "d", "n_latents",
"k", "meta"}``, written atomically; ``meta`` is a JSON-like dict of how it was trained.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Keys of an SAE file (:func:`save_sae`).
FILE_KEYS = ("state_dict", "d", "n_latents", "k", "meta")


def geometric_median(x_ND: Tensor, n_iter: int = 64, tol: float = 1e-6) -> Tensor:
    """The geometric median of the rows of ``x_ND`` by Weiszfeld's iterations, from their mean.

    Each iteration replaces the estimate y by the mean of the rows weighted by 1 / ||x_i - y||
    (distances below 1e-12 are raised to it); it stops after ``n_iter`` iterations or once y moves by
    less than ``tol`` times the rows' RMS distance to it. Computed in float64.

    Parameters
    ----------
    x_ND : torch.Tensor, (N, D)
    n_iter : int
    tol : float

    Returns
    -------
    torch.Tensor, (D,), the dtype and device of ``x_ND``

    Raises
    ------
    ValueError
        If ``x_ND`` is not 2-D with at least one row.
    """
    if x_ND.ndim != 2 or x_ND.shape[0] == 0:
        raise ValueError(f"geometric_median needs an (N, D) tensor with N >= 1, got shape {tuple(x_ND.shape)}")
    x = x_ND.double()
    y = x.mean(dim=0)
    for _ in range(n_iter):
        dist_N = (x - y).norm(dim=1).clamp_min(1e-12)
        weights_N = 1.0 / dist_N
        new = (weights_N[:, None] * x).sum(dim=0) / weights_N.sum()
        moved = (new - y).norm()
        y = new
        if moved <= tol * dist_N.square().mean().sqrt():
            break
    return y.to(x_ND.dtype)


class TopKSAE(nn.Module):
    """Top-k sparse autoencoder (module docstring; methods.md Sec. 7).

    Parameters
    ----------
    d : int
        Input width.
    n_latents : int
        Number of latents n.
    k : int
        Active latents per input, 1 <= k <= n.
    seed : int
        Seed of the decoder's initial directions (a ``torch.Generator``; the global RNG is not used).

    Attributes
    ----------
    W_enc : nn.Parameter, (n, d)
    b_enc : nn.Parameter, (n,)
    W_dec : nn.Parameter, (d, n), unit-norm columns
    b_pre : nn.Parameter, (d,)

    Raises
    ------
    ValueError
        If a size is not a positive integer or k > n_latents.
    """

    def __init__(self, d: int, n_latents: int, k: int, *, seed: int = 0):
        super().__init__()
        for name, value in (("d", d), ("n_latents", n_latents), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TopKSAE: {name} must be a positive integer, got {value!r}")
        if k > n_latents:
            raise ValueError(f"TopKSAE: k = {k} exceeds n_latents = {n_latents}")
        self.d, self.n_latents, self.k = d, n_latents, k
        generator = torch.Generator().manual_seed(seed)
        directions_nd = torch.randn(n_latents, d, generator=generator)
        directions_nd /= directions_nd.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(directions_nd.clone().T)  # (d, n), the transpose of a contiguous (n, d)
        self.W_enc = nn.Parameter(directions_nd)
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_pre = nn.Parameter(torch.zeros(d))

    def extra_repr(self) -> str:
        return f"d={self.d}, n_latents={self.n_latents}, k={self.k}"

    @torch.no_grad()
    def init_b_pre(self, sample_ND: Tensor) -> None:
        """Set ``b_pre`` to the geometric median of a data sample (:func:`geometric_median`).

        Raises
        ------
        ValueError
            If the sample is not (N, d) with N >= 1.
        """
        if sample_ND.ndim != 2 or sample_ND.shape[1] != self.d:
            raise ValueError(f"init_b_pre needs an (N, {self.d}) sample, got shape {tuple(sample_ND.shape)}")
        self.b_pre.copy_(geometric_median(sample_ND.to(self.b_pre)))

    def pre_activations(self, x_BD: Tensor) -> Tensor:
        """W_enc (x - b_pre) + b_enc, (B, n).

        b_pre's gradient through the encoder (-W_enc^T summed over the batch) is taken by a zero-valued
        matrix-vector term instead of through the (B, d) input, which saves a (B, n) x (n, d) product
        in the backward pass; the value is exactly W_enc (x - b_pre) + b_enc.
        """
        centred_BD = x_BD - self.b_pre.detach()
        pre_Bn = F.linear(centred_BD, self.W_enc, self.b_enc)
        if torch.is_grad_enabled() and self.b_pre.requires_grad:
            pre_Bn = pre_Bn - F.linear(self.b_pre - self.b_pre.detach(), self.W_enc.detach())
        return pre_Bn

    def topk(self, pre_Bn: Tensor) -> tuple[Tensor, Tensor]:
        """ReLU(TopK_k) of pre-activations, sparse: values (B, k) >= 0 and latent indices (B, k), int64."""
        values_Bk, indices_Bk = pre_Bn.topk(self.k, dim=-1, sorted=False)
        return F.relu(values_Bk), indices_Bk

    def encode(self, x_BD: Tensor) -> Tensor:
        """z = ReLU(TopK_k(pre)), (B, n), dense with zeros."""
        values_Bk, indices_Bk = self.topk(self.pre_activations(x_BD))
        return torch.zeros(x_BD.shape[0], self.n_latents, dtype=values_Bk.dtype, device=values_Bk.device).scatter(
            1, indices_Bk, values_Bk
        )

    def decode(self, z_Bn: Tensor) -> Tensor:
        """x_hat = W_dec z + b_pre, (B, d), from dense latents."""
        return F.linear(z_Bn, self.W_dec, self.b_pre)

    def decode_sparse(self, values_BK: Tensor, indices_BK: Tensor, bias: bool = True) -> Tensor:
        """W_dec z (+ b_pre), (B, d), from K latents per input given as values and indices (B, K).

        Equals :meth:`decode` of the dense z with those entries, as a sum over the K decoder columns
        (``embedding_bag``) instead of a product with all n; ``bias=False`` leaves out b_pre (AuxK).
        """
        out_BD = F.embedding_bag(indices_BK, self.W_dec.T, per_sample_weights=values_BK, mode="sum")
        return out_BD + self.b_pre if bias else out_BD

    def forward(self, x_BD: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction and latents: (x_hat (B, d), z (B, n) dense)."""
        values_Bk, indices_Bk = self.topk(self.pre_activations(x_BD))
        x_hat_BD = self.decode_sparse(values_Bk, indices_Bk)
        z_Bn = torch.zeros(x_BD.shape[0], self.n_latents, dtype=values_Bk.dtype, device=values_Bk.device)
        return x_hat_BD, z_Bn.scatter(1, indices_Bk, values_Bk)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Remove from each decoder column's gradient its component along the column (before a step).

        Raises
        ------
        RuntimeError
            If ``W_dec`` has no gradient (call after ``backward``).
        """
        grad_Dn = self.W_dec.grad
        if grad_Dn is None:
            raise RuntimeError("remove_parallel_grad: W_dec has no gradient; call it after backward()")
        parallel_n = (grad_Dn * self.W_dec).sum(dim=0)
        grad_Dn.sub_(self.W_dec * parallel_n)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder column to unit norm (after a step)."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True))


def save_sae(path: str | Path, sae: TopKSAE, meta: dict) -> None:
    """Write an SAE file atomically (a temporary file beside it, then a rename; module docstring).

    Parameters
    ----------
    path : path
    sae : TopKSAE
        Saved from CPU copies of its parameters.
    meta : dict
        How it was trained; plain Python values (str, int, float, bool, None, lists, dicts), which
        ``torch.load(weights_only=True)`` reads back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "state_dict": {name: tensor.detach().cpu() for name, tensor in sae.state_dict().items()},
        "d": sae.d,
        "n_latents": sae.n_latents,
        "k": sae.k,
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)


def load_sae(path: str | Path) -> tuple[TopKSAE, dict]:
    """Read an SAE file written by :func:`save_sae`, on CPU.

    Returns
    -------
    sae : TopKSAE
        In eval mode.
    meta : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a readable torch file, lacks one of :data:`FILE_KEYS`, or its tensors do not
        fit its sizes (a corrupt or foreign file); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SAE file at {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise ValueError(f"SAE file {path} is corrupt or not a torch file ({type(error).__name__}: {error})") from error
    if not isinstance(record, dict) or any(key not in record for key in FILE_KEYS):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"SAE file {path} holds {found}, not the keys {', '.join(FILE_KEYS)} of save_sae")
    sae = TopKSAE(record["d"], record["n_latents"], record["k"])
    try:
        sae.load_state_dict(record["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"SAE file {path}: its state dict does not fit its sizes ({error})") from error
    return sae.eval(), record["meta"]
