"""Direct computations of the published methods' formulas, written from the papers, independent
of panoplace's modules: they read plain state dicts (in each method's published key names,
without the ``aggregator.`` / ``backbone.`` prefixes) and run the maths step by step, in float64.
Used by the aggregator, backbone and importer tests."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from panoplace.models.vit import vit_children

SD = Dict[str, torch.Tensor]


def _d(sd: SD, key: str) -> torch.Tensor:
    return sd[key].double()


def linear(sd: SD, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return x @ _d(sd, prefix + "weight").T + _d(sd, prefix + "bias")


def conv1x1(sd: SD, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` -> ``(N, C', h, w)`` with a 1x1 conv written as a matrix product."""
    w = _d(sd, prefix + "weight")[:, :, 0, 0]
    return torch.einsum("oc,nchw->nohw", w, x) + _d(sd, prefix + "bias").view(1, -1, 1, 1)


def layer_norm(sd: SD, prefix: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * _d(sd, prefix + "weight") + _d(sd, prefix + "bias")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax(q k^T / sqrt(d_h)) v with an explicit softmax. ``(N, T, d)`` inputs."""
    n, tq, d = q.shape
    dh = d // heads
    qh = q.reshape(n, tq, heads, dh).transpose(1, 2)
    kh = k.reshape(n, k.shape[1], heads, dh).transpose(1, 2)
    vh = v.reshape(n, v.shape[1], heads, dh).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
    s = torch.exp(s - s.amax(-1, keepdim=True))
    a = s / s.sum(-1, keepdim=True)
    return (a @ vh).transpose(1, 2).reshape(n, tq, d)


def mha(sd: SD, prefix: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """nn.MultiheadAttention's maths on its parameters (``in_proj_weight``, ``out_proj``)."""
    w, b = _d(sd, prefix + "in_proj_weight"), _d(sd, prefix + "in_proj_bias")
    d = q.shape[-1]
    qp = q @ w[:d].T + b[:d]
    kp = k @ w[d:2 * d].T + b[d:2 * d]
    vp = v @ w[2 * d:].T + b[2 * d:]
    return linear(sd, prefix + "out_proj.", attention(qp, kp, vp, heads))


# ---- GeM + FC (CosPlace / EigenPlaces) --------------------------------------------------------

def gem_fc(x: torch.Tensor, p: float, fc_w: torch.Tensor, fc_b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L2 per location, GeM, FC, L2. ``(N, C, h, w)`` -> ``(N, D)``."""
    x = x.double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    g = x.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
    y = g @ fc_w.double().T + fc_b.double()
    return y / y.norm(dim=1, keepdim=True)


# ---- MixVPR -------------------------------------------------------------------------------------

def mixvpr(sd: SD, x: torch.Tensor, depth: int) -> torch.Tensor:
    """Keys ``mix.i.mix.{0,1,3}``, ``channel_proj``, ``row_proj``. ``(N, C, h, w)`` -> ``(N, D)``."""
    x = x.double().flatten(2)  # (N, C, hw)
    for i in range(depth):
        p = f"mix.{i}.mix."
        h = layer_norm(sd, p + "0.", x, 1e-5)
        h = torch.relu(linear(sd, p + "1.", h))
        x = x + linear(sd, p + "3.", h)
    y = linear(sd, "channel_proj.", x.transpose(1, 2))  # (N, hw, c')
    y = linear(sd, "row_proj.", y.transpose(1, 2))  # (N, c', rows)
    y = y.flatten(1)
    return y / y.norm(dim=1, keepdim=True)


# ---- BoQ ----------------------------------------------------------------------------------------

def boq(sd: SD, x: torch.Tensor, num_layers: int, heads: int) -> torch.Tensor:
    """BoQ with the official key names. ``(N, C, h, w)`` -> ``(N, D)``."""
    x = F.conv2d(x.double(), _d(sd, "proj_c.weight"), _d(sd, "proj_c.bias"), padding=1)
    t = layer_norm(sd, "norm_input.", x.flatten(2).transpose(1, 2), 1e-5)
    outs = []
    for i in range(num_layers):
        p = f"boqs.{i}."
        e = p + "encoder."
        t = layer_norm(sd, e + "norm1.", t + mha(sd, e + "self_attn.", t, t, t, heads), 1e-5)
        ff = linear(sd, e + "linear2.", torch.relu(linear(sd, e + "linear1.", t)))
        t = layer_norm(sd, e + "norm2.", t + ff, 1e-5)
        q = _d(sd, p + "queries").expand(t.shape[0], -1, -1)
        q = layer_norm(sd, p + "norm_q.", q + mha(sd, p + "self_attn.", q, q, q, heads), 1e-5)
        outs.append(layer_norm(sd, p + "norm_out.", mha(sd, p + "cross_attn.", q, t, t, heads), 1e-5))
    o = torch.cat(outs, dim=1).transpose(1, 2)  # (N, d, L*q)
    o = linear(sd, "fc.", o).flatten(1)
    return o / o.norm(dim=1, keepdim=True)


# ---- SALAD --------------------------------------------------------------------------------------

def sinkhorn_plan(scores: torch.Tensor, dustbin: float, iters: int) -> torch.Tensor:
    """Transport plan with a dustbin by alternating row/column scaling in the probability
    domain (not the log domain): rows (m clusters + dustbin) with mass 1/(m+n) each, the dustbin
    (n-m)/(m+n), columns 1/(m+n). Returns ``P * (m + n)`` without the dustbin, ``(N, m, n)``."""
    b, m, n = scores.shape
    k = torch.exp(torch.cat([scores.double(), torch.full((b, 1, n), float(dustbin), dtype=torch.float64)], 1))
    a = torch.full((m + 1,), 1.0 / (m + n), dtype=torch.float64)
    a[m] = (n - m) / (m + n)
    c = torch.full((n,), 1.0 / (m + n), dtype=torch.float64)
    u = torch.ones(b, m + 1, dtype=torch.float64)
    v = torch.ones(b, n, dtype=torch.float64)
    for _ in range(iters):
        u = a / (k * v.unsqueeze(1)).sum(2)
        v = c / (k * u.unsqueeze(2)).sum(1)
    plan = u.unsqueeze(2) * k * v.unsqueeze(1)
    return plan[:, :m] * (m + n)


def salad(sd: SD, x: torch.Tensor, token: Optional[torch.Tensor], iters: int = 3) -> torch.Tensor:
    """SALAD with the official key names. ``(N, C, h, w)``, ``(N, C)`` -> ``(N, g + l*m)``."""
    x = x.double()
    t = x.mean(dim=(2, 3)) if token is None else token.double()
    f = conv1x1(sd, "cluster_features.3.", torch.relu(conv1x1(sd, "cluster_features.0.", x))).flatten(2)
    s = conv1x1(sd, "score.3.", torch.relu(conv1x1(sd, "score.0.", x))).flatten(2)
    p = sinkhorn_plan(s, float(sd["dust_bin"]), iters)  # (N, m, n)
    g = linear(sd, "token_features.2.", torch.relu(linear(sd, "token_features.0.", t)))
    n_, l_, m_ = x.shape[0], f.shape[1], p.shape[1]
    v = torch.zeros(n_, l_, m_, dtype=torch.float64)
    for j in range(m_):  # cluster by cluster: V_j = sum_i P_ji f_i, normalised
        vj = (f * p[:, j:j + 1, :]).sum(-1)
        v[:, :, j] = vj / vj.norm(dim=1, keepdim=True)
    out = torch.cat([g / g.norm(dim=1, keepdim=True), v.flatten(1)], dim=1)
    return out / out.norm(dim=1, keepdim=True)


# ---- DINOv2 ViT ---------------------------------------------------------------------------------

def dinov2(sd: SD, x: torch.Tensor, heads: int, n_blocks: int, final_norm: bool):
    """DINOv2 ViT on images ``(N, 3, H, W)`` with its hub key names; returns the patch map
    ``(N, C, H/14, W/14)`` and the class token ``(N, C)`` after ``n_blocks`` blocks (+ ``norm``)."""
    x = x.double()
    n, _, h, w = x.shape
    pt = F.conv2d(x, _d(sd, "patch_embed.proj.weight"), _d(sd, "patch_embed.proj.bias"), stride=14)
    gh, gw = pt.shape[-2:]
    tok = torch.cat([_d(sd, "cls_token").expand(n, -1, -1), pt.flatten(2).transpose(1, 2)], dim=1)
    pos = _d(sd, "pos_embed")
    m = int(math.sqrt(pos.shape[1] - 1))
    if (gh, gw) != (m, m):
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((gh + 0.1) / m, (gw + 0.1) / m), mode="bicubic",
                             align_corners=False)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)
    tok = tok + pos
    for i in range(n_blocks):
        p = f"blocks.{i}."
        y = layer_norm(sd, p + "norm1.", tok, 1e-6)
        qkv = linear(sd, p + "attn.qkv.", y)
        d = tok.shape[-1]
        a = attention(qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:], heads)
        tok = tok + linear(sd, p + "attn.proj.", a) * _d(sd, p + "ls1.gamma")
        y = layer_norm(sd, p + "norm2.", tok, 1e-6)
        y = linear(sd, p + "mlp.fc2.", F.gelu(linear(sd, p + "mlp.fc1.", y)))
        tok = tok + y * _d(sd, p + "ls2.gamma")
    if final_norm:
        tok = layer_norm(sd, "norm.", tok, 1e-6)
    fmap = tok[:, 1:].transpose(1, 2).reshape(n, -1, gh, gw)
    return fmap, tok[:, 0]


def strip(sd: SD, prefix: str) -> SD:
    """The entries of ``sd`` under ``prefix``, with it removed."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def official_state_dict(name: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random state dict with DINOv2's hub key names and shapes (LayerScale and norms far from
    their initial values, so that every term of every block shows in the output)."""
    g = torch.Generator().manual_seed(seed)
    children, prefixes, dim = vit_children(name)
    body_sd = torch.nn.Sequential(OrderedDict(children)).state_dict()
    out: Dict[str, torch.Tensor] = {}
    for src, dst in prefixes:
        for k, v in body_sd.items():
            if k.startswith(dst) and (dst.endswith(".") or k == dst):
                scale = 0.5 if "gamma" in k else (0.02 if v.dim() > 1 else 0.1)
                out[src + k[len(dst):]] = torch.randn(v.shape, generator=g) * scale
    for k in list(out):
        if "norm" in k and k.endswith("weight"):
            out[k] += 1.0
    return out
