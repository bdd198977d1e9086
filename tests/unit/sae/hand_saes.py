"""Hand-built top-k SAEs (clipmech.sae.model.TopKSAE) for the evaluation tests: random tied and exact identity."""

from __future__ import annotations

import torch

from clipmech.sae.model import TopKSAE


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
