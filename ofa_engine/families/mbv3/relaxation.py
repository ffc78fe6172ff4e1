"""The differentiable relaxation of a MobileNetV3 genome, for gradient search.

Given one relaxed one-hot sample per gene block, it returns the relaxed OFA encoding (a slot's
kernel / expand one-hots scaled by the probability that the depth keeps the slot) and the
analytic efficiency as differentiable functions: MACs, params and Flash are the exact table
values contracted with the choice vectors (exact for hard choices), the peak activation a max
over slots of the same.
"""

from __future__ import annotations

import numpy as np
import torch

from .genome import MobileNetV3Genome
from .tables import TABLE_COLUMNS, EfficiencyTables

__all__ = ["MobileNetV3Relaxation"]


class MobileNetV3Relaxation:
    """`blocks`: the gene blocks whose logits are sampled together (width, resolution, depth
    per stage, kernel per slot, expand per slot); a block's logits have shape
    `block.shape + (options,)`."""

    def __init__(self, genome: MobileNetV3Genome, tables: EfficiencyTables):
        g = genome
        W, R, K, E = tables.shape
        slots, maxd = g.num_slots, int(g.slot_index.max()) + 1
        f32 = torch.float32
        columns = tables.values.shape[-1]
        # MACs, params, Flash (int8 weights) as before; the deployed files' Flash (`TABLE_COLUMNS`
        # from 3 on) in a contraction of their own, so the first three sum as they always did.
        self.t_sum = torch.tensor(tables.values.reshape(slots, W, R, K, E, columns)[..., :3], dtype=f32)
        self.t_deployed = torch.tensor(tables.values.reshape(slots, W, R, K, E, columns)[..., 3:], dtype=f32)
        self.t_peak = torch.tensor(tables.peak.reshape(slots, W, R, K, E), dtype=f32)
        self.f_sum = torch.tensor(tables.fixed_values.reshape(W, R, columns)[..., :3], dtype=f32)
        self.f_deployed = torch.tensor(tables.fixed_values.reshape(W, R, columns)[..., 3:], dtype=f32)
        self.deployed_names = [name for name, col in sorted(TABLE_COLUMNS.items(), key=lambda kv: kv[1]) if col >= 3]
        self.f_peak = torch.tensor(tables.fixed_peak.reshape(W, R), dtype=f32)
        self.keeps = torch.tensor(g.depths[:, None] > np.arange(maxd)[None, :], dtype=f32)   # (D, maxd)
        self.slots = slots
        genes = np.arange(g.num_genes)
        self.blocks = [genes[g.wid_gene], genes[g.res_gene], genes[g.d_genes], genes[g.ks_genes], genes[g.e_genes]]

    def __call__(self, samples: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(relaxed encoding (n, encoding_size), {analytic metric: (n,)}) of relaxed samples,
        one per block: (n, W), (n, R), (n, stages, D), (n, slots, K), (n, slots, E)."""
        pw, pr, pd, pk, pe = samples
        n = pw.shape[0]
        active = (pd @ self.keeps).reshape(n, self.slots)                               # (n, slots)
        enc = torch.cat([pr, pw, torch.cat([pk * active[..., None], pe * active[..., None]], 2).reshape(n, -1)], 1)
        slot_sum = torch.einsum("nw,nr,nsk,nse,swrkem->nsm", pw, pr, pk, pe, self.t_sum)
        sums = torch.einsum("nw,nr,wrm->nm", pw, pr, self.f_sum) + (slot_sum * active[..., None]).sum(1)
        slot_peak = torch.einsum("nw,nr,nsk,nse,swrke->ns", pw, pr, pk, pe, self.t_peak) * active
        peak = torch.maximum(torch.einsum("nw,nr,wr->n", pw, pr, self.f_peak), slot_peak.max(1).values)
        slot_deployed = torch.einsum("nw,nr,nsk,nse,swrkem->nsm", pw, pr, pk, pe, self.t_deployed)
        deployed = (torch.einsum("nw,nr,wrm->nm", pw, pr, self.f_deployed)
                    + (slot_deployed * active[..., None]).sum(1))
        return enc, {"macs": sums[:, 0], "params": sums[:, 1], "flash_bytes": sums[:, 2],
                     "peak_activation_bytes": peak,
                     **{name: deployed[:, i] for i, name in enumerate(self.deployed_names)}}
