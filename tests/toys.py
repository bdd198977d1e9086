"""Small random stand-ins shared by several test modules."""

from __future__ import annotations

import numpy as np

from clipmech.decomposition import pool as dec


def random_attnpool_weights(rng: np.random.Generator, n_tokens: int, width: int, embed_dim: int, n_heads: int) -> dec.AttnPoolWeights:
    """Attention-pool weights with standard-normal entries: T x C positional embedding, C x C
    q/k/v projections, E x C output projection."""
    return dec.AttnPoolWeights(
        positional_embedding=rng.standard_normal((n_tokens, width)),
        q_weight=rng.standard_normal((width, width)),
        q_bias=rng.standard_normal(width),
        k_weight=rng.standard_normal((width, width)),
        k_bias=rng.standard_normal(width),
        v_weight=rng.standard_normal((width, width)),
        v_bias=rng.standard_normal(width),
        c_weight=rng.standard_normal((embed_dim, width)),
        c_bias=rng.standard_normal(embed_dim),
        n_heads=n_heads,
    )


def die_on_region_write(monkeypatch, n: int) -> None:
    """Make the ``n``-th region write of ``xarray.Dataset.to_zarr`` raise KeyboardInterrupt, as a
    job killed mid-extraction would stop (the earlier writes complete)."""
    import xarray as xr

    original = xr.Dataset.to_zarr
    calls = {"n": 0}

    def dying_to_zarr(self, *args, **kwargs):
        if kwargs.get("region") is not None:
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("killed mid-extraction")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", dying_to_zarr)


def record_region_writes(monkeypatch) -> list:
    """Restore ``xarray.Dataset.to_zarr`` (after :func:`die_on_region_write`) and record the
    ``region`` of every call in the returned list."""
    import xarray as xr

    monkeypatch.undo()
    original = xr.Dataset.to_zarr
    written: list = []

    def recording_to_zarr(self, *args, **kwargs):
        written.append(kwargs.get("region"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", recording_to_zarr)
    return written


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max_n ||a_n - b_n|| / ||b_n|| over the rows of two arrays of the same shape."""
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


def no_hooks(model) -> bool:
    """True when no module of ``model`` holds a forward hook or forward pre-hook."""
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
