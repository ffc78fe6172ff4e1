"""Elastic Transformer layers (HAT's `LinearSuper` / `LayerNormSuper`): each owns its largest
weight, is told the active size per call, and slices.

Sizes are `forward` arguments, never stored, so one supernet serves many callers (threads,
the trainer's several subnets per step) at once. The input's last dimension gives the active
input width. Each layer's `extract(...)` returns the equivalent standard torch layer holding
copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .static import MLP, Attention, EncoderBlock, attention

__all__ = ["ElasticLinear", "ElasticLayerNorm", "ElasticAttention", "ElasticMLP", "ElasticEncoderBlock",
           "ElasticPatchEmbed"]


def _init_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    # timm's ViT initialisation: truncated normal (std 0.02) weights, zero biases.
    nn.init.trunc_normal_(weight, std=0.02)
    if bias is not None:
        nn.init.zeros_(bias)


class ElasticLinear(nn.Module):
    """A linear layer whose in / out features are prefixes of the largest weight."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.empty(max_out)) if bias else None
        _init_linear(self.weight, self.bias)

    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        bias = None if self.bias is None else self.bias[:out_features]
        return F.linear(x, self.weight[:out_features, :x.size(-1)], bias)

    def extract(self, in_features: int, out_features: int) -> nn.Linear:
        linear = nn.Linear(in_features, out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight[:out_features, :in_features])
            if self.bias is not None:
                linear.bias.copy_(self.bias[:out_features])
        return linear


class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm over the first `x.size(-1)` channels: statistics and affine of those only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(-1)
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    def extract(self, channels: int) -> nn.LayerNorm:
        norm = nn.LayerNorm(channels, eps=self.eps)
        with torch.no_grad():
            norm.weight.copy_(self.weight[:channels])
            norm.bias.copy_(self.bias[:channels])
        return norm


class ElasticPatchEmbed(nn.Module):
    """Patch embedding: a conv with kernel = stride = patch size; elastic output channels."""

    def __init__(self, in_channels: int, max_channels: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.weight = nn.Parameter(torch.empty(max_channels, in_channels, patch_size, patch_size))
        self.bias = nn.Parameter(torch.zeros(max_channels))
        # timm initialises the patch conv like a linear layer over the flattened patch.
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """(B, tokens, channels)."""
        y = F.conv2d(x, self.weight[:channels], self.bias[:channels], self.patch_size)
        return y.flatten(2).transpose(1, 2)

    def extract(self, channels: int) -> nn.Conv2d:
        conv = nn.Conv2d(self.weight.size(1), channels, self.patch_size, self.patch_size)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:channels])
            conv.bias.copy_(self.bias[:channels])
        return conv


class ElasticAttention(nn.Module):
    """Multi-head self-attention with elastic heads (fixed head size) and elastic width.

    `qkv` holds the largest projection, rows laid out (q | k | v) x head x head_dim: the first
    `heads` heads of each of q, k and v are one slice of a (3, heads, head_dim, C) view.
    """

    def __init__(self, max_channels: int, max_heads: int, head_dim: int):
        super().__init__()
        self.max_heads, self.head_dim = max_heads, head_dim
        self.qkv = ElasticLinear(max_channels, 3 * max_heads * head_dim)
        self.proj = ElasticLinear(max_heads * head_dim, max_channels)

    def qkv_weight(self, heads: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (3 x heads x head_dim, channels), bias) of the first `heads` heads."""
        c_max = self.qkv.weight.size(1)
        w = self.qkv.weight.view(3, self.max_heads, self.head_dim, c_max)[:, :heads, :, :channels]
        b = self.qkv.bias.view(3, self.max_heads, self.head_dim)[:, :heads]
        return w.reshape(-1, channels), b.reshape(-1)

    def forward(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        weight, bias = self.qkv_weight(heads, x.size(-1))
        y = attention(F.linear(x, weight, bias), heads, self.head_dim)
        return self.proj(y, x.size(-1))

    def extract(self, channels: int, heads: int) -> Attention:
        qkv = nn.Linear(channels, 3 * heads * self.head_dim)
        with torch.no_grad():
            weight, bias = self.qkv_weight(heads, channels)
            qkv.weight.copy_(weight)
            qkv.bias.copy_(bias)
        return Attention(qkv, self.proj.extract(heads * self.head_dim, channels), heads, self.head_dim)


class ElasticMLP(nn.Module):
    """fc1 -> GELU -> fc2 with elastic hidden units and elastic width."""

    def __init__(self, max_channels: int, max_hidden: int):
        super().__init__()
        self.fc1 = ElasticLinear(max_channels, max_hidden)
        self.fc2 = ElasticLinear(max_hidden, max_channels)

    def forward(self, x: torch.Tensor, hidden: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x, hidden)), x.size(-1))

    def extract(self, channels: int, hidden: int) -> MLP:
        return MLP(self.fc1.extract(channels, hidden), self.fc2.extract(hidden, channels))


class ElasticEncoderBlock(nn.Module):
    """Pre-norm encoder block with elastic width, heads and MLP hidden units."""

    def __init__(self, max_channels: int, max_heads: int, head_dim: int, max_hidden: int, eps: float):
        super().__init__()
        self.norm1 = ElasticLayerNorm(max_channels, eps=eps)
        self.attn = ElasticAttention(max_channels, max_heads, head_dim)
        self.norm2 = ElasticLayerNorm(max_channels, eps=eps)
        self.mlp = ElasticMLP(max_channels, max_hidden)

    def forward(self, x: torch.Tensor, heads: int, hidden: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), heads)
        return x + self.mlp(self.norm2(x), hidden)

    def extract(self, channels: int, heads: int, hidden: int) -> EncoderBlock:
        return EncoderBlock(self.norm1.extract(channels), self.attn.extract(channels, heads),
                            self.norm2.extract(channels), self.mlp.extract(channels, hidden))
