"""Ridge regression, written once: the latency models, the profile fits and the gradient
strategy's latency surrogate all solve the same normal equations."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["ridge_solve"]


def ridge_solve(x: np.ndarray, y: np.ndarray, penalty: float | np.ndarray = 0.0, *,
                row_scale: np.ndarray | None = None, standardize: bool = False,
                unpenalized: Sequence[int] = ()) -> np.ndarray:
    """Coefficients `b` minimising ||diag(r) (x b - y)||^2 + sum_j penalty_j (s_j b_j)^2.

    `row_scale` r weighs each row (None: 1); for a relative-error fit pass 1 / y.
    `standardize`: penalise coefficients of columns scaled to unit root-mean-square (s_j),
    so that one penalty suits columns of any unit; otherwise s_j = 1.
    `unpenalized`: columns exempt from the penalty (an intercept column).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if row_scale is not None:
        x = x * row_scale[:, None]
        y = y * row_scale
    scale = np.ones(x.shape[1])
    if standardize:
        scale = np.sqrt((x ** 2).mean(0))
        scale[scale == 0] = 1.0
        x = x / scale
    diag = np.broadcast_to(np.asarray(penalty, np.float64), (x.shape[1],)).copy()
    diag[list(unpenalized)] = 0.0
    a = x.T @ x + np.diag(diag)
    return np.linalg.solve(a, x.T @ y) / scale
