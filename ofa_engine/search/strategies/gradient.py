"""Gradient search: Gumbel-softmax relaxation through the differentiable accuracy predictor.

Every gene gets a vector of logits. Each step draws `samples` straight-through Gumbel-softmax
configs: the forward pass sees hard one-hot choices, the backward pass the soft ones. The
space's `relaxation()` turns them into a relaxed encoding, which goes through the predictor's
`torch_module()`, and into differentiable analytic efficiency; latency is a ridge-regression
surrogate of the device profile (linear in the encoding and in MACs) fitted on random configs.
Loss = -accuracy + `penalty` x relative excess over each bound; Adam on the logits, the
temperature annealed from `tau_start` to `tau_end`. Every sampled config is evaluated for the
history. The most probable config is then projected onto the feasible set by greedy shrinking
(`repair`) and improved by feasible single-choice hill climbing (`polish`).

A relaxation (a family's `relaxation()`; MobileNetV3's is in its family folder) is callable and has
`blocks`: a list of integer arrays of gene indices covering every gene once, the genes of a
block sharing one option count; a block's logits have shape `block.shape + (options,)` and are
sampled together, in list order. Called with one relaxed sample per block
(`(n,) + block.shape + (options,)`) it returns (relaxed encoding (n, encoding_size), {analytic
metric: (n,) tensor}).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ...predictors.linear import ridge_solve
from ..evaluator import efficiency_metrics
from ..repair import polish, repair
from . import Count, Iterations, NonNegative, Positive, SearchStrategy, StrategyOptions, register_strategy


class GradientOptions(StrategyOptions):
    steps: Iterations = 100
    samples: Count = 16
    lr: NonNegative = 0.1
    penalty: NonNegative = 5.0
    tau_start: Positive = 1.0
    tau_end: Positive = 0.1
    polish_rounds: Iterations = 20


@register_strategy
class Gradient(SearchStrategy):
    name = "gradient"
    Options = GradientOptions

    def run(self, problem, rng: np.random.Generator) -> None:
        import torch   # only when gradient search runs: the other strategies need numpy alone

        o = self.options
        ev, g = problem.evaluator, problem.genome
        relax = problem.space.relaxation()
        if relax is None:
            raise ValueError(f"strategy 'gradient' needs a differentiable relaxation of the efficiency, "
                             f"unavailable for space '{problem.space.name}'")
        if not hasattr(ev.accuracy_predictor, "torch_module"):
            raise ValueError("strategy 'gradient' needs an accuracy predictor with torch_module()")
        # A private copy: never touch (or accumulate gradients into) a shared module.
        net = copy.deepcopy(ev.accuracy_predictor.torch_module()).float().eval()
        for p in net.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        bounds = problem.constraints.items()
        latency_w = self._latency_surrogate(problem, rng) if any(m == "latency_ms" for _, m, _ in bounds) else None

        blocks = [np.asarray(b, np.int64) for b in relax.blocks]
        logits = [torch.zeros(b.shape + (int(g.cardinality[b.flat[0]]),), requires_grad=True) for b in blocks]
        opt = torch.optim.Adam(logits, lr=o["lr"])
        n = o["samples"]
        for step in range(o["steps"]):
            tau = o["tau_start"] * (o["tau_end"] / o["tau_start"]) ** (step / max(1, o["steps"] - 1))
            samples = [self._gumbel(l, n, tau, gen) for l in logits]
            enc, analytic = relax(samples)
            accuracy = net(enc).reshape(-1)
            values = efficiency_metrics(analytic, ev)   # in the precision searched for
            if latency_w is not None:
                values["latency_ms"] = torch.cat([enc, values["macs"][:, None] / 1e6, torch.ones(n, 1)], 1) @ latency_w
            excess = sum(torch.relu(values[metric] / limit - 1) for _, metric, limit in bounds) if bounds else 0.0
            loss = (-accuracy + o["penalty"] * excess).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            genes = np.empty((n, g.num_genes), np.int64)
            for b, sample in zip(blocks, samples):
                genes[:, b.reshape(-1)] = sample.argmax(-1).reshape(n, -1).numpy()
            problem.evaluate(genes, step)

        mode = np.empty((1, g.num_genes), np.int64)
        with torch.no_grad():
            for b, logit in zip(blocks, logits):
                mode[0, b.reshape(-1)] = logit.argmax(-1).reshape(-1).numpy()
        projected, _ = repair(problem, mode, o["steps"])
        polish(problem, projected, o["steps"] + 1, o["polish_rounds"])

    @staticmethod
    def _gumbel(logit: Any, n: int, tau: float, gen: Any) -> Any:
        import torch
        u = torch.rand((n,) + tuple(logit.shape), generator=gen).clamp_(1e-9, 1 - 1e-9)
        soft = torch.softmax((logit - torch.log(-torch.log(u))) / tau, -1)
        hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        return hard - soft.detach() + soft

    @staticmethod
    def _latency_surrogate(problem, rng: np.random.Generator, n: int = 2048) -> Any:
        """Ridge weights of latency ~ [encoding, MACs / 1e6, 1] over random configs."""
        import torch
        ev, g = problem.evaluator, problem.genome
        genes = g.random(n, rng)
        eff = ev.efficiency_of(genes)
        x = np.concatenate([g.encode(genes), (eff["macs"] / 1e6)[:, None], np.ones((n, 1))], 1)
        return torch.tensor(ridge_solve(x, eff["latency_ms"], 1e-3), dtype=torch.float32)
