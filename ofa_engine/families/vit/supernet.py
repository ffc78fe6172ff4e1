"""The elastic Vision Transformer supernet: stateless forward over any config, extraction and
the importance sort."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .elastic import ElasticEncoderBlock, ElasticLayerNorm, ElasticLinear, ElasticPatchEmbed
from .space import ViTConfig, ViTSpace
from .static import StaticViT

__all__ = ["ViTSupernet", "build_supernet", "extract"]


class ViTSupernet(nn.Module):
    """Weight-sharing ViT of a `ViTSpace`.

    `forward(x, cfg)` runs the subnet `cfg` (the largest when omitted) on images at the
    space's `image_size`. Nothing about the active subnet is stored on the module, so
    concurrent callers never see each other's configs. A subnet keeps the first `depth`
    blocks, the first `embed_dim` channels of the residual stream, and in each block the first
    heads and MLP hidden units: `sort_by_importance` puts the most important ones first.
    """

    def __init__(self, space: ViTSpace):
        super().__init__()
        self.space = space
        c = max(space.embed_dims)
        self.patch_embed = ElasticPatchEmbed(space.in_channels, c, space.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, space.num_patches, c))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            ElasticEncoderBlock(c, max(space.num_heads), space.head_dim, space.max_mlp_hidden, space.layer_norm_eps)
            for _ in range(space.max_depth))
        self.norm = ElasticLayerNorm(c, eps=space.layer_norm_eps)
        self.head = ElasticLinear(c, space.num_classes)

    # ------------------------------------------------------------------ running
    def _config(self, cfg: ViTConfig | Mapping[str, Any] | None) -> ViTConfig:
        return self.space.largest() if cfg is None else self.space.validate(cfg)

    def _layers(self, cfg: ViTConfig):
        """(block, heads, MLP hidden units) of every kept block, in order."""
        for i in range(cfg.depth):
            yield self.blocks[i], cfg.num_heads[i], self.space.mlp_hidden(cfg.embed_dim, cfg.mlp_ratio[i])

    def forward(self, x: torch.Tensor, cfg: ViTConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
        cfg = self._config(cfg)
        c = cfg.embed_dim
        x = self.patch_embed(x, c) + self.pos_embed[:, :, :c]
        for block, heads, hidden in self._layers(cfg):
            x = block(x, heads, hidden)
        return self.head(self.norm(x).mean(1), self.space.num_classes)

    @torch.no_grad()
    def extract(self, cfg: ViTConfig | Mapping[str, Any]) -> StaticViT:
        """A standalone static network equal to this supernet in config `cfg` (eval mode)."""
        cfg = self._config(cfg)
        c = cfg.embed_dim
        blocks = [block.extract(c, heads, hidden) for block, heads, hidden in self._layers(cfg)]
        net = StaticViT(self.patch_embed.extract(c), self.pos_embed[:, :, :c].clone(), blocks,
                        self.norm.extract(c), self.head.extract(c, self.space.num_classes), cfg, self.space.name)
        return net.eval()

    # ------------------------------------------------------------------ importance sort
    @torch.no_grad()
    def sort_by_importance(self, embed: bool = True, heads: bool = True, mlp: bool = True) -> None:
        """Permute units so that every smaller subnet keeps the most important ones, leaving
        the function of the largest subnet unchanged (every permutation is applied to both the
        layer that writes a unit and every layer that reads it).

        Importance is the L1 norm of the weights that read a unit, as OFA sorts channels:
        `mlp`, a block's hidden units by fc2's input columns; `heads`, a block's heads by the
        output projection's columns of the head; `embed`, the residual stream's channels by
        every block's qkv and fc1 input columns and the classifier's. Ties keep their order
        (stable sort), so sorting twice changes nothing.
        """
        for block in self.blocks:
            if mlp:
                _sort_mlp(block.mlp)
            if heads:
                _sort_heads(block.attn)
        if embed:
            self._sort_embed()

    def _sort_embed(self) -> None:
        readers = [w for b in self.blocks for w in (b.attn.qkv.weight, b.mlp.fc1.weight)] + [self.head.weight]
        order = _order(sum(w.abs().sum(0) for w in readers))
        for weight in readers:
            _permute(weight, order, 1)
        # Writers of the residual stream, and the per-channel parameters it passes through.
        _permute(self.patch_embed.weight, order, 0)
        _permute(self.patch_embed.bias, order, 0)
        _permute(self.pos_embed, order, 2)
        norms = [self.norm] + [n for b in self.blocks for n in (b.norm1, b.norm2)]
        for norm in norms:
            _permute(norm.weight, order, 0)
            _permute(norm.bias, order, 0)
        for b in self.blocks:
            for writer in (b.attn.proj, b.mlp.fc2):
                _permute(writer.weight, order, 0)
                _permute(writer.bias, order, 0)

    def importance(self) -> dict[str, Any]:
        """The importance of every sortable unit, in the current order: `embed` (channels,),
        `heads` and `mlp` lists with one vector per block (see `sort_by_importance`)."""
        readers = [w for b in self.blocks for w in (b.attn.qkv.weight, b.mlp.fc1.weight)] + [self.head.weight]
        return {"embed": sum(w.abs().sum(0) for w in readers).detach().clone(),
                "heads": [_head_importance(b.attn) for b in self.blocks],
                "mlp": [b.mlp.fc2.weight.abs().sum(0).detach().clone() for b in self.blocks]}


def _head_importance(attn) -> torch.Tensor:
    c = attn.proj.weight.size(0)
    return attn.proj.weight.abs().view(c, attn.max_heads, attn.head_dim).sum((0, 2)).detach().clone()


def _sort_mlp(mlp) -> None:
    order = _order(mlp.fc2.weight.abs().sum(0))
    _permute(mlp.fc1.weight, order, 0)
    _permute(mlp.fc1.bias, order, 0)
    _permute(mlp.fc2.weight, order, 1)


def _sort_heads(attn) -> None:
    heads, d = attn.max_heads, attn.head_dim
    order = _order(_head_importance(attn))
    # The head's rows of q, k and v and its columns of the output projection move together.
    rows = (torch.arange(3)[:, None, None] * heads * d + order[None, :, None] * d + torch.arange(d)[None, None, :])
    _permute(attn.qkv.weight, rows.reshape(-1), 0)
    _permute(attn.qkv.bias, rows.reshape(-1), 0)
    _permute(attn.proj.weight, (order[:, None] * d + torch.arange(d)[None, :]).reshape(-1), 1)


def _order(importance: torch.Tensor) -> torch.Tensor:
    return torch.argsort(importance, descending=True, stable=True)


def _permute(tensor: torch.Tensor, order: torch.Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, order))


def build_supernet(preset: str | ViTSpace) -> ViTSupernet:
    """A freshly initialised supernet of a named space (or of a `ViTSpace`)."""
    return ViTSupernet(ViTSpace.preset(preset) if isinstance(preset, str) else preset)


def extract(supernet: ViTSupernet, config: ViTConfig | Mapping[str, Any]) -> StaticViT:
    """`supernet.extract(config)`: the static module of standard layers of one subnet."""
    return supernet.extract(config)
