"""Constrained search for the most accurate subnet on a device, and the one-call pipeline.

    from ofa_engine.search import Constraints, Evaluator, search, specialize
    ev = Evaluator("tiny-fmnist", load_profile("cpu-ort-1t"), load_accuracy_predictor("tiny-fmnist"))
    result = search(ev, Constraints(latency_ms=0.5, peak_memory_kb=64), "evolution", seed=0)
    spec = specialize("cpu-ort-1t", Constraints(latency_ms=0.5), out="model.onnx")

See docs/search.md for the strategies, the exact efficiency tables and the benchmarks.
"""

from .constraints import CONSTRAINT_FIELDS, Constraints, InfeasibleBudgetError
from .core import STRATEGIES, Problem, SearchResult, check_budget, search
from .evaluator import EFFICIENCY_METRICS, METRIC_NAMES, EfficiencyTables, Evaluator
from .genome import Genome
from .ranges import budget_ranges

__all__ = ["CONSTRAINT_FIELDS", "Constraints", "EFFICIENCY_METRICS", "EfficiencyTables", "Evaluator",
           "Genome", "InfeasibleBudgetError", "METRIC_NAMES", "Problem", "STRATEGIES", "SearchResult",
           "Specialization", "budget_ranges", "check_budget", "search", "specialize"]


def __getattr__(name: str):
    # specialize pulls in torch, ONNX and the bundled data; load it only when asked for.
    if name in ("specialize", "Specialization"):
        from . import pipeline as module
        return getattr(module, name)
    raise AttributeError(f"module 'ofa_engine.search' has no attribute '{name}'")
