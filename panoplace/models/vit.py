"""DINOv2 vision transformers (ViT-S/14, ViT-B/14) in plain torch, with DINOv2's weight names.

The layers follow the published DINOv2 architecture (Oquab et al., arXiv:2304.07193; the
``facebookresearch/dinov2`` hub models ``dinov2_vits14`` / ``dinov2_vitb14``):

- patch embedding: a 14x14 convolution with stride 14 (``patch_embed.proj``); images must be a
  multiple of 14 pixels in each direction (the original refuses other sizes too);
- a class token (``cls_token``) in front of the patch tokens, and learned position embeddings
  (``pos_embed``, ``(1, 1 + 37*37, C)``: trained at 518x518). For another grid ``h0 x w0`` the
  37x37 patch embeddings are resized with bicubic interpolation by the scale factors
  ``((h0 + 0.1) / 37, (w0 + 0.1) / 37)``, no antialiasing (DINOv2's ``interpolate_offset=0.1``
  rule, kept so that the published weights see the embeddings they were trained with); the class
  token's embedding is kept as is, and at exactly 37x37 nothing is interpolated;
- 12 pre-norm blocks ``x + ls1(attn(norm1(x)))``, ``x + ls2(mlp(norm2(x)))`` with multi-head
  self-attention (fused ``qkv`` projection), LayerScale (``ls1.gamma``, ``ls2.gamma``), an MLP
  with GELU and ratio 4, LayerNorm with ``eps=1e-6``;
- a final LayerNorm (``norm``). ``mask_token`` is kept (the checkpoints hold it) but unused.

The modules here work on token sequences ``(N, 1 + L, C)``;
:class:`panoplace.models.backbones.ViTBackbone` turns the output into a feature map and the
class token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # 518 / 14
INTERPOLATE_OFFSET = 0.1
LAYERNORM_EPS = 1e-6


@dataclass(frozen=True)
class ViTSpec:
    """Size of one DINOv2 ViT: embedding width, depth, heads."""

    dim: int
    depth: int
    heads: int


VIT_SPECS: Dict[str, ViTSpec] = {
    "dinov2_vits14": ViTSpec(dim=384, depth=12, heads=6),
    "dinov2_vitb14": ViTSpec(dim=768, depth=12, heads=12),
}


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Position embeddings for a ``grid_h x grid_w`` patch grid (DINOv2's rule, see the module
    docstring).

    Shape:
        - pos_embed: ``(1, 1 + M*M, C)``.
        - Output: ``(1, 1 + grid_h*grid_w, C)``.
    """
    n = pos_embed.shape[1] - 1
    m = int(round(math.sqrt(n)))
    if m * m != n:
        raise InputError(f"pos_embed must hold 1 + M*M embeddings, got {pos_embed.shape[1]}")
    if grid_h == m and grid_w == m:
        return pos_embed
    dtype = pos_embed.dtype
    cls_pos = pos_embed[:, :1].float()
    patch = pos_embed[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    scale = (float(grid_h + INTERPOLATE_OFFSET) / m, float(grid_w + INTERPOLATE_OFFSET) / m)
    patch = F.interpolate(patch, scale_factor=scale, mode="bicubic", align_corners=False)
    if patch.shape[-2:] != (grid_h, grid_w):
        raise InputError(f"position-embedding interpolation gave {tuple(patch.shape[-2:])}, "
                         f"expected {(grid_h, grid_w)}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
    return torch.cat([cls_pos, patch], dim=1).to(dtype)


class PatchEmbed(nn.Module):
    """14x14 patches -> tokens (parameter names ``proj.weight``, ``proj.bias``).

    Shape: ``(N, 3, H, W)`` -> ``(N, (H/14) * (W/14), C)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TokenEmbed(nn.Module):
    """Patch embedding + class token + interpolated position embeddings.

    Shape: ``(N, 3, H, W)`` -> ``(N, 1 + (H/14)*(W/14), C)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + PRETRAIN_GRID * PRETRAIN_GRID, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """DINOv2's initialisation of the embeddings (the conv keeps PyTorch's default)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.mask_token.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h, w = int(x.shape[2]), int(x.shape[3])  # plain ints: the grid is static in an ONNX export
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1)
        return tokens + interpolate_pos_embed(self.pos_embed, h // PATCH_SIZE, w // PATCH_SIZE)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and an output ``proj``.

    Shape: ``(N, T, C)`` -> ``(N, T, C)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class LayerScale(nn.Module):
    """``x * gamma`` per channel (parameter ``gamma``)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.init = float(init)
        self.gamma = nn.Parameter(torch.full((dim,), self.init))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.gamma.fill_(self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with hidden width ``4 * dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """One pre-norm transformer block with LayerScale.

    Shape: ``(N, T, C)`` -> ``(N, T, C)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def vit_children(name: str) -> Tuple[List[Tuple[str, nn.Module]], List[Tuple[str, str]], int]:
    """The body children of DINOv2 ``name`` in forward order (``embed``, ``block0``..,
    ``norm``), the (weight-file prefix, body prefix) key renames, and the width C.

    Raises:
        InputError: ``name`` is not a DINOv2 ViT panoplace provides.
    """
    if name not in VIT_SPECS:
        raise InputError(f"unknown DINOv2 model {name!r}; valid: {', '.join(VIT_SPECS)}")
    spec = VIT_SPECS[name]
    children: List[Tuple[str, nn.Module]] = [("embed", TokenEmbed(spec.dim))]
    children += [(f"block{i}", Block(spec.dim, spec.heads)) for i in range(spec.depth)]
    children.append(("norm", nn.LayerNorm(spec.dim, eps=LAYERNORM_EPS)))
    prefixes = [("patch_embed.", "embed.patch_embed."), ("cls_token", "embed.cls_token"),
                ("pos_embed", "embed.pos_embed"), ("mask_token", "embed.mask_token"), ("norm.", "norm.")]
    prefixes += [(f"blocks.{i}.", f"block{i}.") for i in range(spec.depth)]
    return children, prefixes, spec.dim


def tokens_to_map(tokens: torch.Tensor, grid_h: int, grid_w: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split ViT output tokens into the patch feature map and the class token.

    Shape:
        - tokens: ``(N, 1 + grid_h*grid_w, C)``.
        - Output: ``(N, C, grid_h, grid_w)`` and ``(N, C)``.
    """
    n, t, c = tokens.shape
    if t != 1 + grid_h * grid_w:
        raise InputError(f"ViT tokens {tuple(tokens.shape)} do not fit a {grid_h}x{grid_w} patch grid")
    fmap = tokens[:, 1:].transpose(1, 2).reshape(n, c, grid_h, grid_w)
    return fmap, tokens[:, 0]
