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
encoder is their transpose (tied init, W_enc = W_dec^T), b_enc = 0. :meth:`TopKSAE.init_from_data`
then sets b_pre to the **geometric median** of a data sample (a few Weiszfeld iterations,
:func:`geometric_median`; the choice of Gao et al. and OpenAI's reference implementation, where
EleutherAI's sparsify uses the sample mean) and scales the encoder, W_enc = c W_dec^T, by the
least-squares factor c = sum <x - b_pre, x_hat - b_pre> / sum ||x_hat - b_pre||^2 of the sample's
initial reconstructions. OpenAI's reference also rescales its encoder at initialisation (to unit-norm
reconstructions of random unit inputs); without it the k largest tied projections overshoot the input
and the first hundreds of steps are spent shrinking them (k = 32 at d = 128: held-out FVU after 200
steps 0.40 unscaled, 0.34 with a scaled encoder; benchmarks/sae.py).

Memory layout: ``W_dec`` is a (d, n) parameter stored as the transpose of a contiguous (n, d) tensor,
so that ``W_dec.T``, whose rows the sparse decoder (:meth:`TopKSAE.decode_sparse`, an
``embedding_bag`` over the k active latents) gathers, is contiguous; the state dict, Adam's moments
and ``.to(device)`` keep that layout.

File format (:func:`save_sae`, :func:`load_sae`): ``torch.save`` of ``{"state_dict", "d", "n_latents",
"k", "meta"}``, a verified artefact (:mod:`clipmech.artefacts`: written atomically with a sha256 record
``<file>.sha256``, checked before it is read); ``meta`` is a JSON-like dict of how it was trained.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipmech import artefacts

#: Keys of an SAE file (:func:`save_sae`).
FILE_KEYS = ("state_dict", "d", "n_latents", "k", "meta")

#: The rule that writes SAE files (named by the messages of :func:`load_sae`).
RULE = "train_sae"


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


class _SparseTopK(torch.autograd.Function):
    """TopK_k of W_enc (x - b_pre) + b_enc and TopK_{k_aux} of its dead-latent entries, whose backward
    pass touches only the selected entries: the encoder gradients are sums over the B (k + k_aux)
    selected (input, latent) pairs, b_pre's is -W_enc^T times b_enc's (OpenAI's reference reduces it the
    same way), the input's an embedding_bag of encoder rows.

    forward(x_BD, W_enc, b_enc, b_pre, k, dead_n, k_aux) -> (values_BK, indices_BK, aux_values_BK,
    aux_indices_BK), values before the ReLU; the AuxK entries are the k_aux largest with every live
    latent at -inf (K = k_aux, 0 when ``k_aux`` is 0).
    """

    #: Most elements of the (rows, k + k_aux, d) products of one slice of the encoder-weight gradient.
    CHUNK_ELEMENTS = 2**26

    @staticmethod
    def forward(ctx, x_BD, W_enc, b_enc, b_pre, k, dead_n, k_aux):
        centred_BD = x_BD - b_pre
        pre_Bn = F.linear(centred_BD, W_enc, b_enc)
        values_BK, indices_BK = pre_Bn.topk(k, dim=-1, sorted=False)
        if k_aux:
            aux_values_BK, aux_indices_BK = pre_Bn.masked_fill_(~dead_n, -math.inf).topk(k_aux, dim=-1, sorted=False)
        else:
            aux_values_BK = values_BK.new_zeros(len(x_BD), 0)
            aux_indices_BK = indices_BK.new_zeros(len(x_BD), 0)
        ctx.save_for_backward(centred_BD, W_enc, indices_BK, aux_indices_BK)
        ctx.mark_non_differentiable(indices_BK, aux_indices_BK)
        return values_BK, indices_BK, aux_values_BK, aux_indices_BK

    @staticmethod
    def backward(ctx, grad_values_BK, _, grad_aux_BK, __):
        centred_BD, W_enc, top_indices_BK, aux_indices_BK = ctx.saved_tensors
        indices_BK = torch.cat([top_indices_BK, aux_indices_BK], dim=1)  # every selected (input, latent)
        grad_BK = torch.cat([grad_values_BK, grad_aux_BK], dim=1)
        grad_b_enc = torch.zeros_like(W_enc[:, 0]).index_add_(0, indices_BK.flatten(), grad_BK.flatten())
        grad_W_enc = torch.zeros_like(W_enc)
        rows = max(1, _SparseTopK.CHUNK_ELEMENTS // max(1, indices_BK.shape[1] * W_enc.shape[1]))
        for first in range(0, len(centred_BD), rows):
            block = slice(first, first + rows)
            products = grad_BK[block, :, None] * centred_BD[block, None, :]
            grad_W_enc.index_add_(0, indices_BK[block].flatten(), products.flatten(0, 1))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices_BK, W_enc, per_sample_weights=grad_BK, mode="sum")
        return grad_x, grad_W_enc, grad_b_enc, -(grad_b_enc @ W_enc), None, None, None


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
        directions_nD = torch.randn(n_latents, d, generator=generator)
        directions_nD /= directions_nD.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(directions_nD.clone().T)  # (d, n), the transpose of a contiguous (n, d)
        self.W_enc = nn.Parameter(directions_nD)
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_pre = nn.Parameter(torch.zeros(d))

    def extra_repr(self) -> str:
        return f"d={self.d}, n_latents={self.n_latents}, k={self.k}"

    @torch.no_grad()
    def init_from_data(self, sample_ND: Tensor) -> None:
        """Set ``b_pre`` to the geometric median of a data sample (:func:`geometric_median`), then scale
        ``W_enc`` by the least-squares factor that best fits the sample's reconstructions x_hat - b_pre to
        x - b_pre (module docstring).

        Raises
        ------
        ValueError
            If the sample is not (N, d) with N >= 1.
        """
        if sample_ND.ndim != 2 or sample_ND.shape[1] != self.d:
            raise ValueError(f"init_from_data needs an (N, {self.d}) sample, got shape {tuple(sample_ND.shape)}")
        sample_ND = sample_ND.to(self.b_pre)
        self.b_pre.copy_(geometric_median(sample_ND))
        centred_ND = sample_ND - self.b_pre
        decoded_ND = self(sample_ND)[0] - self.b_pre
        factor = (centred_ND * decoded_ND).sum() / decoded_ND.square().sum()
        if factor > 0:  # NaN (nothing reconstructed) or <= 0 (a degenerate sample): left unscaled
            self.W_enc.mul_(factor)

    def pre_activations(self, x_BD: Tensor) -> Tensor:
        """W_enc (x - b_pre) + b_enc, (B, n)."""
        return F.linear(x_BD - self.b_pre, self.W_enc, self.b_enc)

    def topk(self, pre_Bn: Tensor) -> tuple[Tensor, Tensor]:
        """ReLU(TopK_k) of pre-activations, sparse: values (B, k) >= 0 and latent indices (B, k), int64."""
        values_BK, indices_BK = pre_Bn.topk(self.k, dim=-1, sorted=False)
        return F.relu(values_BK), indices_BK

    def encode_sparse(
        self, x_BD: Tensor, dead_n: Tensor | None = None, k_aux: int = 0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """ReLU(TopK_k) latents, sparse, and the AuxK latents of the dead, with a sparse backward pass.

        The same values as :meth:`topk` of :meth:`pre_activations`, but the gradient flows back only
        through the k + k_aux selected pre-activations of each input (:class:`_SparseTopK`, as in
        OpenAI's reference), never as a dense (B, n) tensor.

        Parameters
        ----------
        x_BD : torch.Tensor, (B, d)
        dead_n : torch.Tensor, bool, (n,), optional
            Dead latents (methods.md Sec. 7); None or ``k_aux = 0``: no AuxK latents.
        k_aux : int
            AuxK latents per input, capped at n: the k_aux largest pre-activations among the dead (fewer
            dead: the others are live latents at value 0).

        Returns
        -------
        values_BK, indices_BK : torch.Tensor, (B, k)
            ReLU'd values and latent indices (int64) of z.
        aux_values_BK, aux_indices_BK : torch.Tensor, (B, K)
            ReLU'd pre-activations and indices of the AuxK latents; K = 0 without AuxK.
        """
        k_aux = min(k_aux, self.n_latents) if dead_n is not None else 0
        mask_n = dead_n if k_aux else torch.zeros(self.n_latents, dtype=torch.bool, device=x_BD.device)
        values_BK, indices_BK, aux_values_BK, aux_indices_BK = _SparseTopK.apply(
            x_BD, self.W_enc, self.b_enc, self.b_pre, self.k, mask_n, k_aux
        )
        return F.relu(values_BK), indices_BK, F.relu(aux_values_BK), aux_indices_BK

    def encode(self, x_BD: Tensor) -> Tensor:
        """z = ReLU(TopK_k(pre)), (B, n), dense with zeros."""
        values_BK, indices_BK = self.topk(self.pre_activations(x_BD))
        return torch.zeros(x_BD.shape[0], self.n_latents, dtype=values_BK.dtype, device=values_BK.device).scatter(
            1, indices_BK, values_BK
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
        values_BK, indices_BK, _, _ = self.encode_sparse(x_BD)
        x_hat_BD = self.decode_sparse(values_BK, indices_BK)
        z_Bn = torch.zeros(x_BD.shape[0], self.n_latents, dtype=values_BK.dtype, device=values_BK.device)
        return x_hat_BD, z_Bn.scatter(1, indices_BK, values_BK)

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


def save_sae(path: str | Path, sae: TopKSAE, meta: dict, *, rule: str = RULE) -> None:
    """Write an SAE file as a verified artefact (:func:`clipmech.artefacts.save_torch`; module docstring).

    Parameters
    ----------
    path : path
    sae : TopKSAE
        Saved from CPU copies of its parameters.
    meta : dict
        How it was trained; plain Python values (str, int, float, bool, None, lists, dicts), which
        ``torch.load(weights_only=True)`` reads back.
    rule : str
        The rule that writes it, named when it fails its check.

    Raises
    ------
    OSError
        If it cannot be written (a full device is named as such); nothing is left behind.
    """
    record = {
        "state_dict": {name: tensor.detach().cpu() for name, tensor in sae.state_dict().items()},
        "d": sae.d,
        "n_latents": sae.n_latents,
        "k": sae.k,
        "meta": meta,
    }
    artefacts.save_torch(path, record, rule=rule)


def non_finite_parameters(sae: TopKSAE) -> list[str]:
    """Names of the SAE's parameters holding a NaN or an infinity."""
    return [name for name, tensor in sae.state_dict().items() if not torch.isfinite(tensor).all()]


def load_sae(path: str | Path, *, rule: str = RULE) -> tuple[TopKSAE, dict]:
    """Read an SAE file written by :func:`save_sae`, on CPU, after checking it against its sha256 record.

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
        If the file fails its sha256 check (garbled, truncated, no record: :func:`clipmech.artefacts.verify`),
        is not a readable torch file, lacks one of :data:`FILE_KEYS`, or its tensors do not fit its sizes or
        are not finite; the message names the file and the rule that rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SAE file at {path} (rule {rule} writes it)")
    record = artefacts.load_torch(path, rule=rule)
    if not isinstance(record, dict) or any(key not in record for key in FILE_KEYS):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"SAE file {path} holds {found}, not the keys {', '.join(FILE_KEYS)} of save_sae")
    sae = TopKSAE(record["d"], record["n_latents"], record["k"])
    try:
        sae.load_state_dict(record["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"SAE file {path}: its state dict does not fit its sizes ({error})") from error
    bad = non_finite_parameters(sae)
    if bad:
        raise ValueError(
            f"SAE file {path} has non-finite weights in {', '.join(bad)}: its training diverged; "
            f"delete it and run rule {rule} again with other settings (a lower lr)"
        )
    return sae.eval(), record["meta"]
