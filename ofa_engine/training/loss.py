"""The loss of one training step: several subnets on one batch, summed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SubnetsLoss"]


class SubnetsLoss(nn.Module):
    """Summed loss of several subnets on one batch: a single forward for DDP. Summing the
    losses into one backward pass equals accumulating the subnets' gradients. `supernet`: any
    family's supernet (`forward(x, config)`)."""

    def __init__(self, supernet: nn.Module, label_smoothing: float, kd_ratio: float):
        super().__init__()
        self.supernet = supernet
        self.label_smoothing, self.kd_ratio = label_smoothing, kd_ratio

    def forward(self, x: torch.Tensor, y: torch.Tensor, configs: list[Any],
                soft_targets: torch.Tensor | None, weights: list[float] | None = None,
                teacher_index: int | None = None) -> torch.Tensor:
        """Label-smoothed cross entropy of each config, plus `kd_ratio` times its cross entropy
        against `soft_targets` (knowledge distillation), weighted by `weights` (default 1 each).

        `teacher_index`: in-place distillation; configs[teacher_index] runs first, learns from
        the labels only, and its detached softmax is the soft target of the others."""
        total = x.new_zeros(())
        order = list(range(len(configs)))
        if teacher_index is not None:
            order.insert(0, order.pop(teacher_index))
        for i in order:
            logits = self.supernet(x, configs[i])
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            if i == teacher_index:
                soft_targets = F.softmax(logits.detach(), 1)
            elif soft_targets is not None:
                loss = loss + self.kd_ratio * torch.sum(-soft_targets * F.log_softmax(logits, 1), 1).mean()
            total = total + (loss if weights is None else weights[i] * loss)
        return total
