"""What every specialize call of one supernet package shares: `load_resources(package)`.

The package's space, accuracy predictor (or MACs proxy), images and one search evaluator per
profile are there at once; the supernet's weights (torch) only when first asked for. So a
package loaded without its weights (`load_package(..., weights=False)`, no torch import) gives
budget ranges and predictions at once, and the same object later extracts subnets: the
evaluators (with their cached budget ranges) are the ones `specialize` uses. Everything is
loaded once per process, under a lock, and only read afterwards.
"""

from __future__ import annotations

import threading
from typing import Any

from ..search.evaluator import Evaluator

__all__ = ["load_resources"]


class _Resources:
    """What every specialize call of one supernet package shares, read-only after loading."""

    def __init__(self, package: Any):
        self.package = package
        self.name: str = package.name
        self.space: Any = package.space   # its family's space object (`ofa_engine.families.family_of`)
        # The package's predictor, or the explicit MACs proxy (`accuracy_source` says which).
        self.predictor = package.predictor_or_proxy()
        self.accuracy_source: str = package.accuracy_source
        self.calib = package.calibration
        self.test = package.evaluation
        self._lock = threading.Lock()
        self._weights_lock = threading.Lock()
        self._supernet = package.supernet
        self._inputs: dict[tuple[str, int], Any] = {}
        self._evaluators: dict[str, Evaluator] = {}

    @property
    def supernet(self) -> Any:
        """The package's trained supernet (eval mode), loaded on first use when the package was
        loaded without its weights (`packages.load_weights`: the weights file alone, once)."""
        if self._supernet is None:
            with self._weights_lock:
                if self._supernet is None:
                    from ..packages import load_weights
                    self._supernet = load_weights(self.package)
        return self._supernet

    def inputs(self, split: str, size: int) -> Any:
        """Preprocessed images of a split at one resolution (a torch tensor; cached, never
        modified in place)."""
        from ..runtime.preprocess import preprocess
        key = (split, size)
        with self._lock:
            if key not in self._inputs:
                images = (self.calib if split == "calib" else self.test).images
                self._inputs[key] = preprocess(images, self.space, size)
            return self._inputs[key]

    def evaluator(self, profile: Any, precision: str | None = None) -> Evaluator:
        """One shared evaluator per distinct profile (by content) and precision (None: the
        profile's, else fp32; see `Evaluator`), so that its budget ranges are computed once
        however often the profile is loaded again."""
        to_json = getattr(profile, "to_json", None)
        precision = precision if precision is not None else getattr(profile, "precision", None) or "fp32"
        key = (to_json(), precision) if callable(to_json) else ("no profile", precision) if profile is None else None
        with self._lock:
            if key is None:
                return Evaluator(self.space, profile, self.predictor, precision=precision)
            if key not in self._evaluators:
                self._evaluators[key] = Evaluator(self.space, profile, self.predictor, precision=precision)
            return self._evaluators[key]


_RESOURCES: dict[int, _Resources] = {}
_RESOURCES_LOCK = threading.Lock()


def load_resources(supernet: Any = "tiny-fmnist") -> _Resources:
    """The process-wide shared supernet, predictor and data of a package (a bundled name, a
    folder, a .zip or a loaded `SupernetPackage`, with or without its weights), loaded on first
    use."""
    from ..packages import load_package
    from ..runtime.memory import keep_freed_memory
    keep_freed_memory()   # the passes of every specialization reuse freed pages (runtime/memory.py)
    package = load_package(supernet)            # cached once per process by its path
    with _RESOURCES_LOCK:
        key = id(package)
        if key not in _RESOURCES or _RESOURCES[key].package is not package:
            _RESOURCES[key] = _Resources(package)
        return _RESOURCES[key]
