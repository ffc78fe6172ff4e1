"""The differentiable relaxation of a ViT genome, for gradient search.

Given one relaxed one-hot sample per gene block (embedding width, depth, heads per slot, MLP
ratio per slot) it returns the relaxed encoding (a slot's one-hots scaled by the probability
that the depth keeps the slot) and the analytic efficiency: each block's metrics are a table
over (width, heads, ratio) contracted with the choice vectors, exact for hard choices; the
peak a max over the kept slots.
"""

from __future__ import annotations

import numpy as np
import torch

from .analytics import SUM_TERMS, block_terms, fixed_terms
from .space import ViTSpace

__all__ = ["ViTRelaxation"]


class ViTRelaxation:
    """`blocks`: the gene blocks whose logits are sampled together; a block's logits have shape
    `block.shape + (options,)`."""

    def __init__(self, space: ViTSpace):
        g = space.genome
        c = g.embed_dims[:, None, None]
        hidden = space.mlp_hidden(c, g.mlp_ratios[None, None, :])
        block = block_terms(space, c, g.num_heads[None, :, None], hidden)           # (C, H, R) each
        fixed = fixed_terms(space, g.embed_dims)                                      # (C,) each
        shape = (len(g.embed_dims), len(g.num_heads), len(g.mlp_ratios))
        f32 = torch.float32
        self.names = SUM_TERMS
        self.t_sum = torch.tensor(np.stack([np.broadcast_to(block[n], shape) for n in SUM_TERMS], -1), dtype=f32)
        self.t_peak = torch.tensor(block["peak_activation_bytes"], dtype=f32)
        self.f_sum = torch.tensor(np.stack([fixed[n] for n in SUM_TERMS], -1), dtype=f32)
        self.f_peak = torch.tensor(fixed["peak_activation_bytes"], dtype=f32)
        self.keeps = torch.tensor(g.depths[:, None] > np.arange(g.num_slots)[None, :], dtype=f32)  # (D, slots)
        genes = np.arange(g.num_genes)
        self.blocks = [genes[g.embed_gene], genes[g.depth_gene], genes[g.heads_genes], genes[g.ratio_genes]]

    def __call__(self, samples: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(relaxed encoding (n, encoding_size), {analytic metric: (n,)}) of relaxed samples, one
        per block: (n, C), (n, D), (n, slots, H), (n, slots, R)."""
        pc, pd, ph, pr = samples
        n = pc.shape[0]
        active = pd @ self.keeps                                                       # (n, slots)
        enc = torch.cat([pc, pd, (ph * active[..., None]).reshape(n, -1), (pr * active[..., None]).reshape(n, -1)], 1)
        slot_sum = torch.einsum("nc,nsh,nsr,chrm->nsm", pc, ph, pr, self.t_sum)
        sums = pc @ self.f_sum + (slot_sum * active[..., None]).sum(1)
        slot_peak = torch.einsum("nc,nsh,nsr,chr->ns", pc, ph, pr, self.t_peak) * active
        peak = torch.maximum(pc @ self.f_peak, slot_peak.max(1).values)
        out = {name: sums[:, i] for i, name in enumerate(self.names)}
        out["peak_activation_bytes"] = peak
        return enc, out
