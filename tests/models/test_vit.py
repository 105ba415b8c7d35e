"""DINOv2 ViT backbones: weights in the official key layout, the formulas, position-embedding
interpolation, trainable blocks and the offline error line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vpr_reference as ref
from panoplace.errors import CheckpointError, InputError
from panoplace.models.backbones import build_backbone
from panoplace.models.vit import interpolate_pos_embed, vit_children
from vpr_reference import official_state_dict


@pytest.fixture(scope="module")
def vits14_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    sd = official_state_dict("dinov2_vits14")
    sd["head.weight"] = torch.zeros(0)  # classifier-like extras of other exports are ignored
    torch.save(sd, path)
    return path


def test_official_layout_loads_every_key(vits14_file: Path) -> None:
    children, prefixes, _ = vit_children("dinov2_vits14")
    sd = torch.load(vits14_file, weights_only=True)
    block0 = {k[len("blocks.0."):] for k in sd if k.startswith("blocks.0.")}
    assert block0 == {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                      "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                      "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"}
    assert sd["pos_embed"].shape == (1, 1370, 384) and sd["mask_token"].shape == (1, 384)
    assert len(sd) == 5 + 12 * 14 + 2 + 1  # embeddings, blocks, norm (the published 175) + our extra head
    bb = build_backbone("dinov2_vits14", weights=str(vits14_file))
    assert bb.out_channels == 384


@pytest.mark.parametrize("cut,final_norm,n_blocks", [("norm", True, 12), (11, False, 12), (5, False, 6)])
def test_dinov2_matches_formulas_on_a_non_square_grid(vits14_file: Path, cut, final_norm: bool, n_blocks: int) -> None:
    bb = build_backbone("dinov2_vits14", cut=cut, weights=str(vits14_file)).eval()
    x = torch.randn(2, 3, 42, 56)  # 3 x 4 patches: the 37x37 embeddings are interpolated
    with torch.no_grad():
        fmap, token = bb.features(x)
    want_map, want_tok = ref.dinov2(torch.load(vits14_file, weights_only=True), x, heads=6,
                                    n_blocks=n_blocks, final_norm=final_norm)
    assert fmap.shape == (2, 384, 3, 4) and token.shape == (2, 384)
    assert torch.allclose(fmap.double(), want_map, atol=2e-4)
    assert torch.allclose(token.double(), want_tok, atol=2e-4)
    assert torch.equal(bb(x), fmap)


def test_position_embeddings_at_the_trained_grid_are_kept() -> None:
    pos = torch.randn(1, 1 + 37 * 37, 8)
    assert interpolate_pos_embed(pos, 37, 37) is pos
    other = interpolate_pos_embed(pos, 16, 23)
    assert other.shape == (1, 1 + 16 * 23, 8)
    assert torch.equal(other[:, 0], pos[:, 0])


def test_trainable_last_blocks() -> None:
    bb = build_backbone("dinov2_vits14", weights="none", n_trainable=4)
    trainable = {k.split(".")[1] for k, p in bb.named_parameters() if p.requires_grad}
    assert trainable == {"block8", "block9", "block10", "block11", "norm"}
    bb.train()
    assert not bb.body.block7.training and bb.body.block8.training


def test_crop_size_must_be_a_multiple_of_the_patch_size() -> None:
    bb = build_backbone("dinov2_vits14", weights="none")
    with pytest.raises(InputError, match="multiples of 14"):
        bb(torch.randn(1, 3, 30, 28))


def test_offline_without_a_file_is_one_clear_line(no_network: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        build_backbone("dinov2_vitb14", weights="imagenet")
    msg = str(err.value)
    assert "\n" not in msg and "does not download" in msg and "dinov2_vitb14_pretrain.pth" in msg
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone("dinov2_vitb14", weights=str(tmp_path / "missing.pth"))
