"""A stand-in for ``clipmech.sae.model`` (branch ``sae``) with exactly its interface, for the evaluation tests.

Replaced by the real module when the branches merge (delete this file and ``conftest.py`` here). Top-k
SAE of methods.md Sec. 7: z = ReLU(TopK_k(W_enc (x - b_pre) + b_enc)), x_hat = W_dec z + b_pre; the
checkpoint is ``torch.save({"state_dict", "d", "n_latents", "k", "meta"})``.
"""

from __future__ import annotations

import torch
from torch import nn


class TopKSAE(nn.Module):
    """W_enc (n_latents, d), b_enc (n_latents,), W_dec (d, n_latents) with unit-norm columns, b_pre (d,)."""

    def __init__(self, d: int, n_latents: int, k: int):
        super().__init__()
        self.d, self.n_latents, self.k = d, n_latents, k
        self.W_enc = nn.Parameter(torch.zeros(n_latents, d))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.W_dec = nn.Parameter(torch.zeros(d, n_latents))
        self.b_pre = nn.Parameter(torch.zeros(d))

    def pre_activations(self, x_BD: torch.Tensor) -> torch.Tensor:
        return (x_BD - self.b_pre) @ self.W_enc.T + self.b_enc

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        values, index = self.pre_activations(x_BD).topk(self.k, dim=-1)
        return torch.zeros(x_BD.shape[0], self.n_latents, dtype=x_BD.dtype, device=x_BD.device).scatter(
            -1, index, values.relu()
        )

    def decode(self, z_Bn: torch.Tensor) -> torch.Tensor:
        return z_Bn @ self.W_dec.T + self.b_pre

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_Bn = self.encode(x_BD)
        return self.decode(z_Bn), z_Bn


def random_sae(d: int, n_latents: int, k: int, seed: int) -> TopKSAE:
    """Tied random init: W_dec unit-norm Gaussian columns, W_enc = W_dec^T, zero biases."""
    generator = torch.Generator().manual_seed(seed)
    sae = TopKSAE(d, n_latents, k)
    with torch.no_grad():
        w = torch.randn(d, n_latents, generator=generator)
        sae.W_dec.copy_(w / w.norm(dim=0, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
    return sae.eval()


def identity_sae(d: int) -> TopKSAE:
    """2d latents +e_i and -e_i with k = d: on inputs without zero entries exactly one latent of each pair
    fires, with |x_i|, and the decoder gives x back exactly."""
    sae = TopKSAE(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=1))
    return sae.eval()


def save_sae(path, sae: TopKSAE, meta: dict) -> None:
    torch.save({"state_dict": sae.state_dict(), "d": sae.d, "n_latents": sae.n_latents, "k": sae.k, "meta": meta}, path)


def load_sae(path) -> tuple[TopKSAE, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    sae = TopKSAE(checkpoint["d"], checkpoint["n_latents"], checkpoint["k"])
    sae.load_state_dict(checkpoint["state_dict"])
    return sae.eval(), checkpoint["meta"]
