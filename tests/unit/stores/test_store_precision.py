"""extraction.precision in the stores: bf16 on a CPU against fp32, the provenance, fp16 refused on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from toys import die_on_region_write, relative_error

from clipmech.decomposition import pool
from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction, activations, attnpool_extraction, base
from clipmech.stores import attnpool as pool_store

VIT = ModelSpec("rand", "clipmech-vit-tiny", None)
RN = ModelSpec("rand-rn", "clipmech-rn-tiny", None)
CODE = "test-code"

#: bf16 against fp32: every stored value within this fraction of its fp32 variable's standard deviation.
#: bf16 keeps 8 significant bits (relative rounding 2^-9); through the tiny models' blocks the largest
#: difference measured was 0.036 std (the float16 tokens), so 0.1 leaves a margin and still fails on a
#: broken forward.
BF16_TOLERANCE = 0.1


def close_in_scale(fp32: np.ndarray, bf16: np.ndarray) -> float:
    """The largest |bf16 - fp32| in units of the fp32 values' standard deviation."""
    fp32, bf16 = fp32.astype(np.float64), bf16.astype(np.float64)
    return float(np.abs(bf16 - fp32).max() / fp32.std())


def test_bf16_activation_store_agrees_with_fp32(tmp_path, tiny_dataset):
    stores = {
        precision: activations.open_store(
            activation_extraction.extract(
                VIT, tiny_dataset, tmp_path / f"{precision}.zarr", batch_size=5, device="cpu",
                precision=precision, code=CODE,
            )
        )
        for precision in ("fp32", "bf16")
    }  # fmt: skip
    fp32, bf16 = stores["fp32"], stores["bf16"]
    assert (fp32.attrs["precision"], bf16.attrs["precision"]) == ("fp32", "bf16")
    assert activation_extraction.StoreProvenance.from_attrs(bf16.attrs).precision == "bf16"
    for name in ("mean", "max", "cls", "tokens", "embedding"):
        assert bf16[name].dtype == fp32[name].dtype  # precision is compute; the stored dtypes stay
        gap = close_in_scale(fp32[name].values, bf16[name].values)
        assert 0 < gap <= BF16_TOLERANCE, (name, gap)  # > 0: the forward did run in bf16


def test_precision_change_restarts_a_partial_store(tmp_path, tiny_dataset, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    die_on_region_write(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        activation_extraction.extract(VIT, tiny_dataset, target, batch_size=5, device="cpu", code=CODE)
    monkeypatch.undo()
    activation_extraction.extract(VIT, tiny_dataset, target, batch_size=5, device="cpu", precision="bf16", code=CODE)
    assert "precision differ" in caplog.text
    assert activations.open_store(target).attrs["precision"] == "bf16"


def test_part_of_another_precision_is_refused(tmp_path, tiny_dataset):
    store = tmp_path / "p.zarr"
    activation_extraction.begin_parts(VIT, tiny_dataset, store, batch_size=5, device="cpu", precision="bf16", code=CODE)
    with pytest.raises(base.StoreProvenanceError, match="precision"):
        activation_extraction.extract_part(VIT, tiny_dataset, store, 0, 2, batch_size=5, device="cpu", code=CODE)


def test_fp16_template_is_written_on_a_cpu(tmp_path, tiny_dataset):
    """begin_activations writes the template on the CPU whatever the precision: its one forward is float32."""
    store = tmp_path / "p.zarr"
    sites = ("visual.blocks.*.hook_mlp_out", "visual.blocks.0.hook_resid_pre")
    partial = activation_extraction.begin_parts(
        VIT, tiny_dataset, store, sites=sites, batch_size=5, device="cpu", precision="fp16", code=CODE
    )
    assert xr.open_zarr(partial, consolidated=False).attrs["precision"] == "fp16"


def test_fp16_on_a_cpu_is_refused_before_anything_is_written(tmp_path, tiny_dataset):
    for extract in (
        lambda: activation_extraction.extract(
            VIT, tiny_dataset, tmp_path / "a.zarr", device="cpu", precision="fp16", code=CODE
        ),
        lambda: attnpool_extraction.extract_attnpool(
            RN, tiny_dataset, tmp_path / "a.zarr", device="cpu", precision="fp16", code=CODE
        ),
    ):
        with pytest.raises(ValueError, match="extraction.precision = 'fp16' needs a CUDA device"):
            extract()
        assert not base.partial_path(tmp_path / "a.zarr").exists()


def test_bf16_attnpool_store_agrees_with_fp32(tmp_path, tiny_dataset):
    stores = {
        precision: pool_store.open_store(
            attnpool_extraction.extract_attnpool(
                RN, tiny_dataset, tmp_path / f"{precision}.zarr", batch_size=5, device="cpu",
                precision=precision, code=CODE,
            )
        )
        for precision in ("fp32", "bf16")
    }  # fmt: skip
    fp32, bf16 = stores["fp32"], stores["bf16"]
    assert attnpool_extraction.AttnPoolProvenance.from_attrs(bf16.attrs).precision == "bf16"
    for name in ("x", "alpha", "y"):
        assert bf16[name].dtype == np.float32
        gap = close_in_scale(fp32[name].values, bf16[name].values)
        assert 0 < gap <= BF16_TOLERANCE, (name, gap)
    # The stored y is the pool of the stored x and alpha to float32 rounding, as decompose_attnpool checks
    # (decomposition.max_rel_err, default 1e-4), whatever the precision.
    parts = pool_store.parts(bf16)
    s_NHC, y_NE = pool_store.pair_scalars(bf16, chunk_size=5)
    assert relative_error(pool.reconstruct_output(s_NHC, parts.u_HCE, parts.bias_E), y_NE) < 1e-5
