"""Bag-of-Queries aggregation (BoQ; Ali-bey et al., CVPR 2024, arXiv:2405.07364).

The local features are projected by a 3x3 convolution (``proj_c``: ``C -> d``) and normalised
per location (``norm_input``), giving a set of ``h*w`` tokens. Each of ``num_layers`` BoQ blocks

1. refines the tokens with a transformer encoder layer (post-norm, ReLU MLP of width ``4d``, no
   dropout): ``X <- LN1(X + MHA(X, X, X))``, ``X <- LN2(X + W2 relu(W1 X))``;
2. takes its ``num_queries`` learned queries ``Q``, adds their self-attention and normalises:
   ``Q' = LN_q(Q + MHA(Q, Q, Q))``;
3. lets the queries read the tokens: ``O = LN_out(MHA(Q', X, X))``.

The outputs of all blocks are stacked (``num_layers * num_queries`` rows of ``d``), a linear
layer ``fc`` maps the rows to ``row_dim``, and the ``d x row_dim`` matrix is flattened
(channel-major) and L2-normalised: ``D = d * row_dim`` (published: ResNet-50 layer3, d=512 ->
16384; DINOv2 ViT-B/14, d=384 -> 12288). Heads: ``d / 64``.

Parameter names follow the official code (``proj_c``, ``norm_input``, ``boqs.N.encoder.*`` as
``nn.TransformerEncoderLayer``, ``boqs.N.queries``, ``boqs.N.self_attn``, ``boqs.N.norm_q``,
``boqs.N.cross_attn``, ``boqs.N.norm_out``, ``fc``); the attention layers here are written with
``scaled_dot_product_attention`` (same parameters as ``nn.MultiheadAttention``), so they export
to ONNX.

Crop fusion: BoQ is a function of a *set* of tokens (no position encoding after the 3x3
projection), so ``raw`` is the token set of a crop and ``add`` concatenates the token sets of
all crops and runs the blocks once: the BoQ of the whole panorama, invariant to the order of the
crops. ``concat``/``per-crop`` run it per crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator


@dataclass
class BoQParams:
    """BoQ's sizes (defaults: the published ResNet-50 model; its DINOv2 model has proj_channels 384).
    ``heads`` 0 means ``proj_channels // 64`` (at least 1)."""

    proj_channels: int = 512
    num_queries: int = 64
    num_layers: int = 2
    row_dim: int = 32
    heads: int = 0

    def __post_init__(self) -> None:
        for name in ("proj_channels", "num_queries", "num_layers", "row_dim"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"boq {name} must be >= 1, got {getattr(self, name)}")
        h = self.n_heads
        if self.proj_channels % h:
            raise InputError(f"boq proj_channels ({self.proj_channels}) must be divisible by its heads ({h})")

    @property
    def n_heads(self) -> int:
        return int(self.heads) if int(self.heads) > 0 else max(1, int(self.proj_channels) // 64)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``), batch first, no dropout.

    Shape: query ``(N, Tq, d)``, key/value ``(N, Tk, d)`` -> ``(N, Tq, d)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        n, tq, d = query.shape
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, t.shape[1], self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(F.linear(query, wq, bq)), heads(F.linear(key, wk, bk)),
                                             heads(F.linear(value, wv, bv)))
        return self.out_proj(out.transpose(1, 2).reshape(n, tq, d))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with ``nn.TransformerEncoderLayer``'s parameter names.

    Shape: ``(N, T, d)`` -> ``(N, T, d)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads)
        self.linear1 = nn.Linear(dim, 4 * dim)
        self.linear2 = nn.Linear(4 * dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x, x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class BoQBlock(nn.Module):
    """One BoQ block: refined tokens and the queries' read-out.

    Shape: ``(N, T, d)`` -> ``(N, T, d)`` and ``(N, num_queries, d)``.
    """

    def __init__(self, dim: int, num_queries: int, heads: int) -> None:
        super().__init__()
        self.encoder = EncoderLayer(dim, heads)
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim))
        self.self_attn = MultiheadAttention(dim, heads)
        self.norm_q = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(dim, heads)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
        x = self.encoder(x)
        q = self.queries.expand(x.shape[0], -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q))
        return x, self.norm_out(self.cross_attn(q, x, x))


class BoQ(Aggregator):
    """BoQ head over ``dim``-channel local features.

    Attributes:
        out_dim: ``proj_channels * row_dim``.

    Shape:
        - Input: ``(N, dim, h, w)``.
        - Output: ``(N, out_dim)``, L2-normalised.
    """

    uses_token = False

    def __init__(self, dim: int, params: Optional[BoQParams] = None) -> None:
        super().__init__()
        p = params or BoQParams()
        if dim < 1:
            raise InputError(f"boq needs dim >= 1, got {dim}")
        self.dim = int(dim)
        self.params = p
        d = int(p.proj_channels)
        self.proj_c = nn.Conv2d(self.dim, d, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(d)
        self.boqs = nn.ModuleList([BoQBlock(d, int(p.num_queries), p.n_heads) for _ in range(int(p.num_layers))])
        self.fc = nn.Linear(int(p.num_layers) * int(p.num_queries), int(p.row_dim))

    @property
    def out_dim(self) -> int:
        return self.proj_c.out_channels * self.fc.out_features

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The projected, normalised tokens of each image (``token`` is ignored).

        Shape:
            - x: ``(N, dim, h, w)``.
            - Output: ``(N, h*w, proj_channels)``.
        """
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"BoQ input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")
        return self.norm_input(self.proj_c(x).flatten(2).transpose(1, 2))

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """The BoQ blocks, ``fc`` and L2 over a token set.

        Shape:
            - raw: ``(N, T, proj_channels)``.
            - Output: ``(N, out_dim)``.
        """
        if raw.dim() != 3 or raw.shape[2] != self.proj_c.out_channels:
            raise InputError(f"BoQ raw input must be (N, T, {self.proj_c.out_channels}), got {tuple(raw.shape)}")
        x, outs = raw, []
        for block in self.boqs:
            x, out = block(x)
            outs.append(out)
        o = self.fc(torch.cat(outs, dim=1).transpose(1, 2))  # (N, d, row_dim)
        return F.normalize(o.flatten(1), p=2, dim=1)

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """All crops' tokens as one set.

        Shape:
            - raw: ``(B, n_crops, T, d)``.
            - Output: ``(B, n_crops * T, d)``.
        """
        return raw.flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finalize(raw(x))``. Shape: ``(N, dim, h, w)`` -> ``(N, out_dim)``."""
        return self.finalize(self.raw(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_dim={self.out_dim}, heads={self.params.n_heads}"

