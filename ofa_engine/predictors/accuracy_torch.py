"""The torch side of the accuracy predictor: training its MLPs, and the frozen differentiable
twins the gradient search uses. Apart from `accuracy.py` so that predicting (numpy) never
imports torch: the app's first page ranks subnets without it."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ScaledMLP", "average_mlps", "mlp_module", "train_mlp"]


def mlp_module(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> nn.Sequential:
    """The torch twin of `_forward`'s MLP: Linear layers with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        linear = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ScaledMLP(nn.Module):
    """offset + scale * mlp(x), frozen: the torch twin of a fitted `MLPEnsembleRegressor` and of
    an `AccuracyPredictor` (offset = its `baseline_bias`, scale = its `target_scale`)."""

    def __init__(self, weights, biases, scale: float, offset: float):
        super().__init__()
        self.mlp, self.scale, self.offset = mlp_module(weights, biases), scale, offset
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)[:, 0] * self.scale + self.offset


def train_mlp(inputs: np.ndarray, target: np.ndarray, hidden: Sequence[int], epochs: int,
               batch_size: int, lr: float, weight_decay: float, seed: int) -> list[nn.Linear]:
    """One seeded MLP (ReLU between `hidden` layers, zero-initialised output) fitted to `target`
    with Adam, a cosine learning rate and MSE; returns its linear layers."""
    inputs, target = torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(target))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sizes = [inputs.shape[1], *hidden, 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        mlp = nn.Sequential(*layers)
        nn.init.zeros_(layers[-1].weight)   # start from the baseline exactly
        nn.init.zeros_(layers[-1].bias)
        optimizer = torch.optim.Adam(mlp.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(target) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)
        mlp.train()
        for _ in range(epochs):
            order = torch.randperm(len(target), generator=generator)
            for start in range(0, len(target), batch_size):
                idx = order[start:start + batch_size]
                loss = torch.mean((mlp(inputs[idx])[:, 0] - target[idx]) ** 2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return [m for m in mlp if isinstance(m, nn.Linear)]


def average_mlps(members: Sequence[Sequence[nn.Linear]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights (in, out) and biases of one MLP whose output is the mean of `members`' outputs
    (all of one shape): first layers side by side, block-diagonal hidden-to-hidden layers, the
    output layer stacked and divided by the member count."""
    k = len(members)
    layers = [[(m.weight.detach().numpy().T.astype(np.float32), m.bias.detach().numpy().astype(np.float32))
               for m in member] for member in members]
    weights = [np.concatenate([member[0][0] for member in layers], axis=1)]
    biases = [np.concatenate([member[0][1] for member in layers])]
    for i in range(1, len(layers[0])):
        rows, cols = layers[0][i][0].shape
        last = i == len(layers[0]) - 1
        w = np.zeros((rows * k, 1 if last else cols * k), dtype=np.float32)
        for j, member in enumerate(layers):
            if last:
                w[j * rows:(j + 1) * rows] = member[i][0] / k
            else:
                w[j * rows:(j + 1) * rows, j * cols:(j + 1) * cols] = member[i][0]
        weights.append(w)
        biases.append(np.mean([member[i][1] for member in layers], axis=0) if last
                      else np.concatenate([member[i][1] for member in layers]))
    return weights, biases


# ---------------------------------------------------------------------- quality
