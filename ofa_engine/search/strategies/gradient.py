"""Gradient search: Gumbel-softmax relaxation through the differentiable accuracy predictor.

Every choice (width, resolution, depth per stage, kernel and expand per slot) gets a vector of
logits. Each step draws `samples` straight-through Gumbel-softmax configs: the forward pass
sees hard one-hot choices, the backward pass the soft ones. Their OFA encoding (a slot's
kernel / expand one-hots scaled by the probability that the depth keeps the slot) goes through
the predictor's `torch_module()`; their efficiency through a differentiable model: MACs,
params and Flash are the exact table values contracted with the choice vectors (exact for hard
choices), the peak activation a max over slots of the same, and latency a ridge-regression
surrogate of the device profile (linear in the encoding and in MACs) fitted on random configs.
Loss = -accuracy + `penalty` x relative excess over each bound; Adam on the logits, the
temperature annealed from `tau_start` to `tau_end`. Every sampled config is evaluated for the
history. The most probable config is then projected onto the feasible set by greedy shrinking
(`repair`) and improved by feasible single-choice hill climbing (`polish`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..repair import polish, repair
from . import SearchStrategy


class Gradient(SearchStrategy):
    name = "gradient"
    defaults = {"steps": 100, "samples": 16, "lr": 0.1, "penalty": 5.0, "tau_start": 1.0, "tau_end": 0.1,
                "polish_rounds": 20}

    def run(self, problem, rng: np.random.Generator) -> None:
        o = self.options
        ev, g = problem.evaluator, problem.genome
        tables = ev.tables
        if tables is None:
            raise ValueError(f"strategy 'gradient' needs the efficiency tables, unavailable for "
                             f"space '{ev.space.name}'")
        if not hasattr(ev.accuracy_predictor, "torch_module"):
            raise ValueError("strategy 'gradient' needs an accuracy predictor with torch_module()")
        # A private copy: never touch (or accumulate gradients into) a shared module.
        net = copy.deepcopy(ev.accuracy_predictor.torch_module()).float().eval()
        for p in net.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        W, R, K, E = tables.shape
        S, slots, maxd = g.num_stages, g.num_slots, ev.space.max_depth
        D = len(g.depths)
        f32 = torch.float32
        t_sum = torch.tensor(tables.values.reshape(slots, W, R, K, E, 3), dtype=f32)
        t_peak = torch.tensor(tables.peak.reshape(slots, W, R, K, E), dtype=f32)
        f_sum = torch.tensor(tables.fixed_values.reshape(W, R, 3), dtype=f32)
        f_peak = torch.tensor(tables.fixed_peak.reshape(W, R), dtype=f32)
        keeps = torch.tensor(g.depths[:, None] > np.arange(maxd)[None, :], dtype=f32)   # (D, maxd)
        bounds = problem.constraints.items()
        latency_w = self._latency_surrogate(problem, rng) if any(m == "latency_ms" for _, m, _ in bounds) else None

        logits = [torch.zeros(shape, requires_grad=True) for shape in ((W,), (R,), (S, D), (slots, K), (slots, E))]
        opt = torch.optim.Adam(logits, lr=o["lr"])
        n = o["samples"]
        for step in range(o["steps"]):
            tau = o["tau_start"] * (o["tau_end"] / o["tau_start"]) ** (step / max(1, o["steps"] - 1))
            pw, pr, pd, pk, pe = (self._gumbel(l, n, tau, gen) for l in logits)
            active = (pd @ keeps).reshape(n, slots)                                     # (n, slots)
            enc = torch.cat([pr, pw, torch.cat([pk * active[..., None], pe * active[..., None]], 2).reshape(n, -1)], 1)
            accuracy = net(enc).reshape(-1)
            slot_sum = torch.einsum("nw,nr,nsk,nse,swrkem->nsm", pw, pr, pk, pe, t_sum)
            sums = torch.einsum("nw,nr,wrm->nm", pw, pr, f_sum) + (slot_sum * active[..., None]).sum(1)
            slot_peak = torch.einsum("nw,nr,nsk,nse,swrke->ns", pw, pr, pk, pe, t_peak) * active
            peak = torch.maximum(torch.einsum("nw,nr,wr->n", pw, pr, f_peak), slot_peak.max(1).values)
            values = {"macs": sums[:, 0], "params": sums[:, 1], "flash_kb": sums[:, 2] / 1024,
                      "peak_memory_kb": peak / 1024}
            if latency_w is not None:
                values["latency_ms"] = torch.cat([enc, sums[:, :1] / 1e6, torch.ones(n, 1)], 1) @ latency_w
            excess = sum(torch.relu(values[metric] / limit - 1) for _, metric, limit in bounds) if bounds else 0.0
            loss = (-accuracy + o["penalty"] * excess).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            genes = np.concatenate([pw.argmax(1)[:, None].numpy(), pr.argmax(1)[:, None].numpy(),
                                    pd.argmax(2).numpy(), pk.argmax(2).numpy(), pe.argmax(2).numpy()], 1)
            problem.evaluate(genes.astype(np.int64), step)

        with torch.no_grad():
            mode = np.concatenate([l.argmax(-1).reshape(-1).numpy() for l in logits])[None].astype(np.int64)
        projected, _ = repair(problem, mode, o["steps"])
        polish(problem, projected, o["steps"] + 1, o["polish_rounds"])

    @staticmethod
    def _gumbel(logit: torch.Tensor, n: int, tau: float, gen: torch.Generator) -> torch.Tensor:
        u = torch.rand((n,) + tuple(logit.shape), generator=gen).clamp_(1e-9, 1 - 1e-9)
        soft = torch.softmax((logit - torch.log(-torch.log(u))) / tau, -1)
        hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        return hard - soft.detach() + soft

    @staticmethod
    def _latency_surrogate(problem, rng: np.random.Generator, n: int = 2048) -> torch.Tensor:
        """Ridge weights of latency ~ [encoding, MACs / 1e6, 1] over random configs."""
        ev, g = problem.evaluator, problem.genome
        genes = g.random(n, rng)
        pop = g.to_population(genes)
        eff = ev.efficiency_of(genes)
        x = np.concatenate([ev.space.encode(pop), (eff["macs"] / 1e6)[:, None], np.ones((n, 1))], 1)
        a = x.T @ x + 1e-3 * np.eye(x.shape[1])
        w = np.linalg.solve(a, x.T @ eff["latency_ms"])
        return torch.tensor(w, dtype=torch.float32)
