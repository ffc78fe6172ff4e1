"""Reinforcement learning: REINFORCE over independent per-choice categorical policies.

The policy has one categorical distribution per gene of the space's genome. Each iteration
samples a batch of configs, scores them with reward = predicted accuracy - `penalty` x relative constraint excess, and takes an Adam ascent
step on the logits along the policy gradient with a moving-average baseline and normalised
advantages. Genes that the sampled config leaves inactive get no gradient (they do not
affect the reward).
"""

from __future__ import annotations

import numpy as np

from . import Count, Fraction, Iterations, NonNegative, SearchStrategy, StrategyOptions, register_strategy


class ReinforceOptions(StrategyOptions):
    iterations: Iterations = 200
    batch: Count = 50
    lr: NonNegative = 0.1
    penalty: NonNegative = 1.0
    baseline_decay: Fraction = 0.9


@register_strategy
class Reinforce(SearchStrategy):
    name = "rl"
    Options = ReinforceOptions

    def run(self, problem, rng: np.random.Generator) -> None:
        o = self.options
        g = problem.genome
        n_genes, width = g.num_genes, int(g.cardinality.max())
        valid = np.arange(width)[None, :] < g.cardinality[:, None]            # (G, C)
        logits = np.where(valid, 0.0, -np.inf)
        m, v = np.zeros_like(logits), np.zeros_like(logits)
        beta1, beta2 = 0.9, 0.999
        baseline = None
        for it in range(o["iterations"]):
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            cdf = np.cumsum(probs, 1)
            u = rng.random((o["batch"], n_genes))
            genes = np.minimum((u[:, :, None] > cdf[None]).sum(2), g.cardinality - 1)
            metrics = problem.evaluate(genes, it)
            reward = metrics["accuracy"] - o["penalty"] * metrics["violation"]
            mean = float(reward.mean())
            baseline = mean if baseline is None else o["baseline_decay"] * baseline + (1 - o["baseline_decay"]) * mean
            advantage = (reward - baseline) / (reward.std() + 1e-8)
            # d log p(choice) / d logits = onehot(choice) - probs, per gene.
            onehot = np.zeros((o["batch"], n_genes, width))
            np.put_along_axis(onehot, genes[:, :, None], 1.0, axis=2)
            weight = g.active(genes).astype(np.float64)
            grad = np.einsum("b,bg,bgc->gc", advantage, weight, onehot - probs[None]) / o["batch"]
            grad = np.where(valid, grad, 0.0)
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            step = o["lr"] * (m / (1 - beta1 ** (it + 1))) / (np.sqrt(v / (1 - beta2 ** (it + 1))) + 1e-8)
            logits = np.where(valid, logits + step, -np.inf)
