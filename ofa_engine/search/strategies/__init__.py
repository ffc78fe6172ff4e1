"""Search strategies: one file each, all behind `SearchStrategy`, all in `STRATEGY_REGISTRY`.

A strategy gets a `Problem` (the search space and its genome, feasibility check, `evaluate`
that records history) and a seeded `numpy.random.Generator`; it returns nothing, or a dict
with extra outcomes (`pareto_rows` + `objective` for multi-objective search). It sees the
space only through `ofa_engine.space.interface`, so it works for every family. Adding a
strategy = one file with a `@register_strategy` subclass and one line in `_load_strategies`.

Options are a pydantic model per strategy (`Options`): the defaults live there, and a bad value
raises a `ValueError` naming the strategy, the option, the value and what is allowed.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ...registry import Registry

__all__ = ["MAX_BATCH", "MAX_ITERATIONS", "MAX_POPULATION", "STRATEGY_REGISTRY", "Count", "Fraction",
           "Iterations", "NonNegative", "PopulationSize", "Positive", "Probability", "SearchStrategy",
           "StrategyOptions", "bounded_count", "make_strategy", "register_strategy", "sample_feasible"]

# Caps on sizes, so that a typo cannot exhaust memory: candidates held at once (a batch, a
# sample, a lattice), an evolving population (each generation redraws up to 64 candidates per
# child at once) and rounds of a loop.
MAX_BATCH = 100_000
MAX_POPULATION = 10_000
MAX_ITERATIONS = 100_000


def _plain_number(value: Any) -> Any:
    # numpy scalars (e.g. from a config array) count as the Python number they hold.
    return value.item() if isinstance(value, (np.integer, np.floating)) else value


def _option(kind: type, allowed: str, **bounds: Any) -> Any:
    return Annotated[kind, BeforeValidator(_plain_number), Field(description=allowed, **bounds)]


def bounded_count(cap_name: str, cap: int) -> Any:
    """An integer option in 1..`cap`; the message names the cap constant."""
    return _option(int, f"an integer >= 1 and <= {cap_name} = {cap}", ge=1, le=cap)


Count = bounded_count("MAX_BATCH", MAX_BATCH)
PopulationSize = bounded_count("MAX_POPULATION", MAX_POPULATION)
Iterations = bounded_count("MAX_ITERATIONS", MAX_ITERATIONS)
NonNegative = _option(float, "a finite number >= 0", ge=0)
Positive = _option(float, "a finite number > 0", gt=0)
Probability = _option(float, "a probability: a number in [0, 1]", ge=0, le=1)
Fraction = _option(float, "a fraction: a number in [0, 1]", ge=0, le=1)


class StrategyOptions(BaseModel):
    """Base of every strategy's options: no unknown options, no silent type conversion, no
    infinity or NaN."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SearchStrategy:
    """Base class: `Options` declares every option and its default; `run` does the search."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, **options: Any):
        fields = self.Options.model_fields
        try:
            parsed = self.Options.model_validate(options)
        except ValidationError as exc:
            errors = exc.errors()
            unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
            if unknown:
                raise ValueError(f"strategy '{self.name}' has no option(s) {unknown}; allowed: "
                                 f"{sorted(fields)}") from None
            key = str(errors[0]["loc"][0])
            raise ValueError(f"strategy '{self.name}' option '{key}' = {options[key]!r}; allowed: "
                             f"{fields[key].description}") from None
        # A plain dict: strategies record what they resolved (e.g. grid's `groups`) in it.
        self.options: dict[str, Any] = parsed.model_dump()

    def run(self, problem, rng: np.random.Generator) -> dict[str, Any] | None:
        raise NotImplementedError


def _load_strategies() -> None:
    # Import order is the order of `STRATEGIES` (and of the app's menus).
    for module in ("grid", "random_search", "evolution", "rl", "gradient", "nsga2"):
        importlib.import_module(f".{module}", __name__)


STRATEGY_REGISTRY: Registry[type[SearchStrategy]] = Registry("strategy", loader=_load_strategies)


def register_strategy(cls: type[SearchStrategy]) -> type[SearchStrategy]:
    """Class decorator: register a strategy under its `name`."""
    STRATEGY_REGISTRY.register(cls.name, cls)
    return cls


def make_strategy(name: str, **options: Any) -> SearchStrategy:
    """The strategy registered as `name`, with `options` validated."""
    return STRATEGY_REGISTRY.get(name)(**options)


def sample_feasible(problem, n: int, rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """`n` uniformly random feasible genomes by vectorised rejection sampling; under a budget so
    tight that `max_rounds` batches find too few, the rest are mutants of the known feasible
    configs (`problem.seeds`), redrawn until feasible, else copies of them."""
    g = problem.genome
    found: list[np.ndarray] = []
    count = 0
    batch = max(2 * n, 256)
    for _ in range(max_rounds):
        cand = g.random(batch, rng)
        ok = cand[problem.feasible(cand)]
        found.append(ok)
        count += len(ok)
        if count >= n:
            break
    pool = np.concatenate(found)[:n] if found else np.zeros((0, g.num_genes), np.int64)
    if len(pool) < n:
        seeds = problem.seeds
        need = n - len(pool)
        base = seeds[rng.integers(len(seeds), size=need)]
        extra = base.copy()
        pending = np.arange(need)
        for _ in range(max_rounds):
            cand = g.mutate(base[pending], rng, 0.1)
            ok = problem.feasible(cand)
            extra[pending[ok]] = cand[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
        pool = np.concatenate([pool, extra])
    return pool
