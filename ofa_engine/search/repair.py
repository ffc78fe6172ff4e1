"""Project a config onto the feasible set and improve it locally (used by the gradient strategy).

`repair`: greedy shrinking -- while the config violates a bound, take the one-step-smaller
choice of an active gene (options are ordered smallest first, e.g. MobileNetV3's smaller
width, resolution, depth, kernel or expand) that removes the most excess per unit of
predicted accuracy lost; as soon as some shrink is feasible, take the most accurate
feasible one. `polish`: hill climbing over every single-choice change, keeping feasibility,
while predicted accuracy improves.
"""

from __future__ import annotations

import numpy as np

__all__ = ["repair", "polish"]


def repair(problem, genes: np.ndarray, iteration: int) -> tuple[np.ndarray, dict]:
    g = problem.genome
    current = genes.reshape(1, -1)
    m = problem.evaluate(current, iteration)
    acc, viol = float(m["accuracy"][0]), float(m["violation"][0])
    for _ in range(int(g.cardinality.sum())):
        if m["feasible"][0]:
            break
        moves, _ = g.neighbours(current, -1)
        if len(moves) == 0:
            break
        mm = problem.evaluate(moves, iteration)
        if mm["feasible"].any():
            pick = int(np.argmax(np.where(mm["feasible"], mm["accuracy"], -np.inf)))
        else:
            gain = viol - mm["violation"]
            loss = np.maximum(acc - mm["accuracy"], 1e-4)
            pick = int(np.argmax(gain / loss)) if (gain > 0).any() else int(np.argmin(mm["violation"]))
        current = moves[pick:pick + 1]
        m = {k: v[pick:pick + 1] for k, v in mm.items()}
        acc, viol = float(m["accuracy"][0]), float(m["violation"][0])
    return current, m


def polish(problem, genes: np.ndarray, iteration: int, rounds: int = 20) -> np.ndarray:
    g = problem.genome
    current = genes.reshape(1, -1)
    best = problem.evaluate(current, iteration)
    if not best["feasible"][0]:
        return current
    acc = float(best["accuracy"][0])
    for _ in range(rounds):
        moves = g.all_moves(current)
        moves = moves[problem.feasible(moves)]
        if len(moves) == 0:
            break
        m = problem.evaluate(moves, iteration)
        pick = int(np.argmax(m["accuracy"]))
        if m["accuracy"][pick] <= acc:
            break
        current, acc = moves[pick:pick + 1], float(m["accuracy"][pick])
    return current
