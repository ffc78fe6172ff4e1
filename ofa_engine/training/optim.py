"""Optimisation details of a phase: augmentation, parameter groups, the learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .recipe import Phase

__all__ = ["augment", "param_groups", "lr_at"]


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shifts up to `pad` pixels (zero padding) and horizontal flips, uint8 (N,C,H,W)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                 rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups: weight decay on weights, none on normalisation layers and biases (as
    OFA; the 1-D parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(phase: Phase, step: int, total: int, steps_per_epoch: int) -> float:
    """The phase's learning rate at `step` of `total`: linear warm-up over `warmup_epochs`,
    then cosine decay to 0."""
    warm = int(phase.warmup_epochs * steps_per_epoch)
    if step < warm:
        return phase.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * phase.lr * (1 + math.cos(math.pi * t))

