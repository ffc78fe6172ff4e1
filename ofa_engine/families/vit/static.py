"""Plain static Vision Transformers: what `ViTSupernet.extract` returns and what gets exported.

Only standard torch layers (Conv2d, Linear, LayerNorm, GELU) and attention written out as
matrix products and a softmax, so that the TorchScript ONNX exporter writes standard ops
(MatMul, Softmax, LayerNormalization; no fused attention) and counting hooks see every product.
`attention` is the one definition of the attention arithmetic: the supernet runs the same
function on its sliced weights, which is why the two agree to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["attention", "Attention", "MLP", "EncoderBlock", "StaticViT", "count_macs"]


def attention(qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Multi-head self-attention of projected tokens `qkv` (B, N, 3 x heads x head_dim, laid out
    q | k | v, each head-major): softmax(q k^T / sqrt(head_dim)) v per head, heads concatenated
    (B, N, heads x head_dim)."""
    b, n, _ = qkv.shape
    qkv = qkv.reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = torch.matmul(q * head_dim ** -0.5, k.transpose(-2, -1))       # B, heads, N, N
    return torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(b, n, heads * head_dim)


class Attention(nn.Module):
    """qkv projection -> `attention` -> output projection."""

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, heads: int, head_dim: int):
        super().__init__()
        self.qkv, self.proj = qkv, proj
        self.heads, self.head_dim = heads, head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(attention(self.qkv(x), self.heads, self.head_dim))


class MLP(nn.Sequential):
    """fc1 -> GELU -> fc2."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear):
        super().__init__()
        self.fc1, self.act, self.fc2 = fc1, nn.GELU(), fc2


class EncoderBlock(nn.Module):
    """Pre-norm encoder block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, norm1: nn.LayerNorm, attn: Attention, norm2: nn.LayerNorm, mlp: MLP):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class StaticViT(nn.Module):
    """A subnet as a standalone ViT: patch conv -> + position embedding -> blocks -> LN ->
    mean over tokens -> classifier. Input (B, in_channels, image_size, image_size)."""

    def __init__(self, patch_embed: nn.Conv2d, pos_embed: torch.Tensor, blocks: list[EncoderBlock],
                 norm: nn.LayerNorm, head: nn.Linear, config: Any, space_name: str):
        super().__init__()
        self.patch_embed = patch_embed
        self.pos_embed = nn.Parameter(pos_embed)
        self.blocks = nn.Sequential(*blocks)
        self.norm = norm
        self.head = head
        # Plain attributes, not state: they describe where the net came from (ONNX metadata).
        self.config = config
        self.space_name = space_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))


def count_macs(net: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of `net` on `x`, per image, counted by torch's
    `FlopCounterMode`: every convolution and matrix product (linear layers and attention's
    q k^T and attn v), none of the LayerNorms, softmaxes, activations, additions or the mean
    (the convention of `analytics`)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(x)
    return counter.get_total_flops() // 2 // x.shape[0]
