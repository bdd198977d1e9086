"""extraction.precision: the config key, the autocast context and causal tracing at bf16 on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from snakemake_cli import TINY
from toys import vision_pairs

from clipmech.config import SCHEMA, load_config
from clipmech.models.precision import PRECISIONS, autocast
from clipmech.models.towers import tower
from clipmech.patching import engine
from clipmech.patching.components import components


def tiny(**extraction):
    config = yaml.safe_load(TINY.read_text())
    config.setdefault("extraction", {}).update(extraction)
    return config


def test_schema_allows_exactly_the_precisions():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert tuple(schema["properties"]["extraction"]["properties"]["precision"]["enum"]) == PRECISIONS


def test_default_is_fp32_and_extraction_jobs_get_the_key():
    loaded = load_config(tiny())
    assert loaded.extraction.precision == "fp32"
    assert load_config(tiny(precision="bf16")).extraction.params_of("tiny-vit")["precision"] == "bf16"


@pytest.mark.parametrize(
    "extraction, expected",
    [
        ({"precision": "fp64"}, "extraction.precision: 'fp64' is not one of ['fp32', 'bf16', 'fp16']"),
        ({"precision": "fp16", "device": "cpu"}, "extraction.precision = 'fp16' needs a CUDA device"),
    ],
)
def test_bad_precision_is_refused_at_parse_time(extraction, expected):
    with pytest.raises(ValueError) as error:
        load_config(tiny(**extraction))
    assert expected in str(error.value)


def test_fp16_on_auto_or_cuda_parses():
    for device in ("auto", "cuda"):
        assert load_config(tiny(precision="fp16", device=device)).extraction.precision == "fp16"


def test_autocast_contexts():
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match=r"extraction.precision = 'fp16' needs a CUDA device; the model runs on cpu"):
        autocast("cpu", "fp16")
    with pytest.raises(ValueError, match="allowed: fp32, bf16, fp16"):
        autocast("cpu", "float16")


def test_bf16_sweep_agrees_with_fp32(tiny_vit):
    """The batched engine under bf16 autocast: its metrics (float32, from float32 outputs) agree with fp32."""
    model, _ = tiny_vit
    clean, corrupt, metric = vision_pairs(model, 3, seed=0)
    sets = [[c] for c in components(tower(model, "visual"), ["resid_pre", "mlp_out"], 3)]
    fp32 = engine.sweep(model, model.encode_image, metric, clean, corrupt, sets, batch_size=16)
    with autocast("cpu", "bf16"):
        bf16 = engine.sweep(model, model.encode_image, metric, clean, corrupt, sets, batch_size=16)

    def metrics(result):
        return np.concatenate([result.m_clean_Q, result.m_corrupt_Q, result.m_patched_QK.ravel()])

    gap = np.abs(metrics(bf16) - metrics(fp32)).max() / metrics(fp32).std()
    assert 0 < gap <= 0.1, gap  # the stores' tolerance (test_store_precision.BF16_TOLERANCE)
