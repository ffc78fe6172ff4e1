"""Small statistics shared by the predictors' evaluation: Kendall's tau, the seeded split and
the latency models' quality metrics."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["kendall_tau", "split_indices", "latency_metrics"]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled as scipy.stats.kendalltau does), O(n^2) in numpy."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"kendall_tau: lengths differ ({a.shape[0]} vs {b.shape[0]})")
    n = a.shape[0]
    if n < 2:
        return float("nan")
    concordant = 0.0
    ties_a = ties_b = 0.0
    pairs = 0.0
    # Row blocks keep memory at O(block * n) for large n.
    for start in range(0, n, 512):
        da = np.sign(a[start:start + 512, None] - a[None, :])
        db = np.sign(b[start:start + 512, None] - b[None, :])
        upper = np.arange(start, min(start + 512, n))[:, None] < np.arange(n)[None, :]
        prod = (da * db)[upper]
        concordant += prod.sum()
        ties_a += (da[upper] == 0).sum()
        ties_b += (db[upper] == 0).sum()
        pairs += upper.sum()
    denom = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return float(concordant / denom) if denom > 0 else float("nan")


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, test) index split; the test part has round(n * test_fraction) rows,
    at least 1 and at most n - 1."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(n * test_fraction))))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def latency_metrics(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """rmse_ms, mape (fraction), kendall_tau, within_10pct (fraction), n_test."""
    p = np.asarray(predicted_ms, np.float64).reshape(-1)
    m = np.asarray(measured_ms, np.float64).reshape(-1)
    if p.shape != m.shape:
        raise ValueError(f"{p.shape[0]} predictions but {m.shape[0]} measurements")
    if m.shape[0] == 0:
        raise ValueError("no measurements to evaluate on")
    rel = np.abs(p - m) / m
    return {"rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))), "mape": float(rel.mean()),
            "kendall_tau": kendall_tau(p, m), "within_10pct": float(np.mean(rel <= 0.10 + 1e-9)),   # 1e-9: 2.2 vs 2.0 is within
            "n_test": int(m.shape[0])}
