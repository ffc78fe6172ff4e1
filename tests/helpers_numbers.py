"""Comparing numbers that were computed on another machine (a committed asset) with a tolerance.

BLAS (numpy's lstsq / solve, ONNX Runtime's kernels) picks its code path by processor: the same
fit on another CPU differs in the last digits (e.g. 0.042800903074715 vs 0.04280090307471389).
Numbers computed in this process by the same code path are compared exactly instead.
"""

from __future__ import annotations

import math
from typing import Any

# Relative tolerance for a refit of a committed fit: a few ulps of float64 amplified by the
# condition of a ridge solve (about 1e-14 relative seen across CPUs) stays far below it, and any
# real change of the data or the method moves the numbers by far more.
REFIT_REL = 1e-9


def assert_close_tree(actual: Any, expected: Any, rel: float = REFIT_REL, abs_tol: float = 0.0,
                      path: str = "") -> None:
    """`actual` equals `expected` field by field: floats within `rel` (relative) or `abs_tol`,
    everything else (keys, lengths, strings, ints, bools, None) exactly."""
    where = path or "value"
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__}, expected a dict"
        assert actual.keys() == expected.keys(), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_close_tree(actual[key], expected[key], rel, abs_tol, f"{path}.{key}" if path else str(key))
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{where}: {type(actual).__name__}, expected a sequence"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close_tree(a, e, rel, abs_tol, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool) and isinstance(actual, (int, float)):
        assert math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol), \
            f"{where}: {actual!r} != {expected!r} (rel {rel:g}, abs {abs_tol:g})"
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} != {expected!r}"
