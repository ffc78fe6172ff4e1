"""Constrained search for the most accurate subnet on a device (the one-call pipeline is `ofa_engine.pipeline`).

    from ofa_engine.search import Constraints, Evaluator, search
    ev = Evaluator("tiny-fmnist", load_profile("cpu-ort-1t"), load_accuracy_predictor("tiny-fmnist"))
    result = search(ev, Constraints(latency_ms=0.5, peak_memory_kb=64), "evolution", seed=0)

See docs/search.md for the strategies, the exact efficiency tables and the benchmarks.
"""

from .constraints import CONSTRAINT_FIELDS, Constraints, InfeasibleBudgetError
from .core import STRATEGIES, Problem, SearchResult, check_budget, search
from .evaluator import EFFICIENCY_METRICS, METRIC_NAMES, Evaluator
from ..space.genome import CategoricalGenome
from ..space.interface import DiscreteSearchSpace
from .ranges import budget_ranges

__all__ = ["CONSTRAINT_FIELDS", "CategoricalGenome", "Constraints", "DiscreteSearchSpace", "EFFICIENCY_METRICS",
           "Evaluator", "InfeasibleBudgetError", "METRIC_NAMES", "Problem", "STRATEGIES",
           "SearchResult", "budget_ranges", "check_budget", "search"]
