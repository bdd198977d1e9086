"""The tower adapter (clipmech.models.towers; methods.md Sec. 6) on the tiny configs and a timm trunk.

The papers' architectures are in tests/slow/test_hook_sites.py.
"""

import open_clip
import pytest
import torch
from torch import nn
from toys import TimmTrunkModel

import clipmech.models.loading  # noqa: F401  (registers clipmech's model configs with open_clip)
from clipmech.models.towers import KINDS, tower


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return open_clip.create_model("clipmech-vit-tiny").eval()


@pytest.fixture(scope="module")
def rn():
    torch.manual_seed(0)
    return open_clip.create_model("clipmech-rn-tiny").eval()


def test_vit_tiny(vit):
    info = tower(vit)
    assert (info.name, info.kind, info.n_layers) == ("visual", "vit", 2)
    assert (info.width, info.n_heads, info.d_head) == (64, 4, 16)
    assert (info.grid, info.n_prefix_tokens, info.n_tokens, info.stride) == ((8, 8), 1, 65, (8, 8))
    assert info.image_size == (64, 64) and not info.has_attnpool
    assert info.blocks == tuple(vit.visual.transformer.resblocks)
    assert info.d_mlp == vit.visual.transformer.resblocks[0].mlp.c_fc.out_features == 4 * info.width


def test_resnet_tiny(rn):
    info = tower(rn)
    assert (info.kind, info.n_layers, info.width, info.n_heads) == ("resnet", 4, 512, 8)
    assert (info.grid, info.n_prefix_tokens, info.n_tokens, info.stride, info.image_size) == (
        (4, 4),
        1,
        17,
        (32, 32),
        (128, 128),
    )
    assert info.has_attnpool and info.d_mlp is None
    assert info.blocks == (rn.visual.layer1, rn.visual.layer2, rn.visual.layer3, rn.visual.layer4)
    with torch.no_grad():
        features = rn.visual.layer4(
            rn.visual.layer3(rn.visual.layer2(rn.visual.layer1(rn.visual.stem(torch.randn(1, 3, 128, 128)))))
        )
    assert tuple(features.shape) == (1, info.width, *info.grid)


def test_text_towers(vit):
    info = tower(vit, "text")
    assert (info.name, info.kind, info.n_layers, info.width, info.n_heads) == ("text", "text", 2, 64, 4)
    assert (info.grid, info.n_prefix_tokens, info.n_tokens, info.stride, info.image_size) == (None, 0, 48, None, None)
    assert info.blocks == tuple(vit.transformer.resblocks)
    cfg = open_clip.get_model_config("clipmech-vit-tiny")
    custom = open_clip.CustomTextCLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])
    custom_info = tower(custom, "text")
    assert custom_info.kind == "text" and custom_info.blocks == tuple(custom.text.transformer.resblocks)
    assert custom_info.n_tokens == 48


def test_timm_trunk():
    model = TimmTrunkModel()
    info = tower(model)
    assert (info.kind, info.n_layers, info.width, info.n_heads) == ("timm", 2, 192, 3)
    assert info.d_mlp == model.visual.trunk.blocks[0].mlp.fc1.out_features
    assert (info.grid, info.n_prefix_tokens, info.n_tokens, info.stride, info.image_size) == (
        (4, 4),
        1,
        17,
        (16, 16),
        (64, 64),
    )
    assert tower(TimmTrunkModel(class_token=False, global_pool="avg")).n_prefix_tokens == 0
    assert tower(TimmTrunkModel(reg_tokens=2)).n_tokens == 3 + 16


def test_unsupported_towers(vit):
    model = nn.Module()
    model.visual = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Linear") as error:
        tower(model)
    assert all(repr(kind) in str(error.value) for kind in ("vit", "timm", "resnet"))
    with pytest.raises(TypeError, match="text tower"):
        tower(model, "text")
    with pytest.raises(ValueError, match="visual, text"):
        tower(vit, "audio")
    assert KINDS == ("vit", "timm", "resnet", "text")
