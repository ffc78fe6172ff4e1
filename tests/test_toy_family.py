"""A toy second family, defined here, runs through every registered strategy, the budget check,
the budget ranges and the evaluator: none of them knows MobileNetV3.

The toy network has a width, a depth, a kind (plain or branched) and, for the branched kind
only, a branch width and a branch activation: the two branch genes are inactive for the plain
kind. Its efficiency is a closed form, its accuracy a seeded logistic model of the encoding.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
import pytest
import torch

from ofa_engine.search import (STRATEGIES, CategoricalGenome, Constraints, DiscreteSearchSpace, Evaluator,
                               InfeasibleBudgetError, budget_ranges, check_budget, search)
from ofa_engine.search.strategies import STRATEGY_REGISTRY
from ofa_engine.space.interface import ANALYTIC_METRICS

OPTIONS = {"width": (8, 16, 32), "depth": (1, 2, 3), "kind": ("plain", "branched"),
           "branch": (4, 8, 12, 16), "act": ("relu", "gelu")}
NAMES = tuple(OPTIONS)
KIND, BRANCH, ACT = NAMES.index("kind"), NAMES.index("branch"), NAMES.index("act")


def toy_active(genes: np.ndarray) -> np.ndarray:
    active = np.ones(genes.shape, bool)
    active[:, [BRANCH, ACT]] = (genes[:, KIND] == 1)[:, None]
    return active


def closed_form(width, depth, branched, branch) -> dict[str, Any]:
    """Efficiency from option values (numbers or soft expectations alike)."""
    macs = 100 * width * width * depth + branched * 50 * branch * width
    params = 10 * width * depth + branched * 3 * branch
    return {"macs": macs, "params": params, "peak_activation_bytes": 64 * width + branched * 16 * branch,
            "flash_bytes": params + 4 * width}


class ToyRelaxation:
    """One block per gene; soft expectations of the option values make the closed form smooth."""

    def __init__(self, genome: CategoricalGenome):
        self.blocks = [np.array(i) for i in range(genome.num_genes)]
        self.values = {k: torch.tensor(v, dtype=torch.float32) for k, v in OPTIONS.items() if k in ("width", "depth", "branch")}

    def __call__(self, samples):
        width, depth, kind, branch, act = samples
        branched = kind[:, 1]
        enc = torch.cat([width, depth, kind, branch * branched[:, None], act * branched[:, None]], 1)
        return enc, closed_form(width @ self.values["width"], depth @ self.values["depth"], branched,
                                branch @ self.values["branch"])


class ToySpace(DiscreteSearchSpace):
    name = "toy"

    def __init__(self):
        self._genome = CategoricalGenome(NAMES, [len(OPTIONS[k]) for k in NAMES], active=toy_active)

    @property
    def genome(self) -> CategoricalGenome:
        return self._genome

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if set(config) != set(NAMES):
            raise ValueError(f"toy config needs the fields {list(NAMES)}, got {sorted(config)}")
        for key, value in config.items():
            if value not in OPTIONS[key]:
                raise ValueError(f"toy config field '{key}' = {value!r}; allowed: {list(OPTIONS[key])}")
        return dict(config)

    def to_configs(self, genes: np.ndarray) -> list[dict[str, Any]]:
        return [{k: OPTIONS[k][int(i)] for k, i in zip(NAMES, row)} for row in np.asarray(genes)]

    def to_genes(self, configs: Any) -> np.ndarray:
        configs = [configs] if isinstance(configs, Mapping) else list(configs)
        return np.array([[OPTIONS[k].index(self.validate(c)[k]) for k in NAMES] for c in configs], np.int64)

    def config_to_dict(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def config_from_dict(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return self.validate(data)

    def analytic_efficiency(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        genes = np.asarray(genes, np.int64)
        value = {k: np.array(OPTIONS[k])[genes[:, NAMES.index(k)]] for k in ("width", "depth", "branch")}
        out = closed_form(value["width"], value["depth"], genes[:, KIND] == 1, value["branch"])
        return {k: np.asarray(v, np.int64) for k, v in out.items()}

    def relaxation(self) -> ToyRelaxation:
        return ToyRelaxation(self.genome)


class ToyAccuracy:
    """sigmoid(w . encoding + b); `predict` takes the space's batch form (a list of configs)."""

    def __init__(self, space: ToySpace, seed: int = 0):
        self.space = space
        rng = np.random.default_rng(seed)
        self.w = (rng.random(space.genome.encoding_size) * 0.8).astype(np.float32)
        self.b = -1.5

    def predict_encoded(self, x):
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ self.w + self.b)))

    def predict(self, configs):
        return self.predict_encoded(self.space.genome.encode(self.space.to_genes(configs)))

    def torch_module(self):
        lin = torch.nn.Linear(len(self.w), 1)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(self.w)[None])
            lin.bias.fill_(self.b)
        return torch.nn.Sequential(lin, torch.nn.Sigmoid(), torch.nn.Flatten(0))


class ToyLatency:
    name = "toy-device"

    def predict_latency_ms(self, configs):
        return np.array([1e-4 * c["width"] * c["width"] * c["depth"] + (0.02 if c["kind"] == "branched" else 0.0)
                         for c in configs])


SPACE = ToySpace()
ALL_GENES = np.array(list(itertools.product(*[range(len(OPTIONS[k])) for k in NAMES])), np.int64)
QUICK = {"grid": {}, "random": {"samples": 60}, "evolution": {"generations": 15, "population": 30},
         "rl": {"iterations": 30, "batch": 16}, "gradient": {"steps": 20, "samples": 8},
         "nsga2": {"generations": 10, "population": 24}}


@pytest.fixture(scope="module")
def toy_eval():
    return Evaluator(SPACE, ToyLatency(), ToyAccuracy(SPACE))


def test_quick_settings_cover_the_registry():
    assert set(QUICK) == set(STRATEGY_REGISTRY.names()) == set(STRATEGIES)


def test_genome_mask_encoding_and_moves():
    g = SPACE.genome
    plain = SPACE.to_genes({"width": 16, "depth": 2, "kind": "plain", "branch": 12, "act": "gelu"})
    other = plain.copy()
    other[0, BRANCH], other[0, ACT] = 0, 0
    # Inactive genes change neither the encoding nor the canonical form.
    np.testing.assert_array_equal(g.encode(plain), g.encode(other))
    np.testing.assert_array_equal(g.canonical(plain), g.canonical(other))
    assert g.encode(plain).sum() == 3 and g.encode(plain).dtype == np.float32
    moves, idx = g.neighbours(plain, -1)
    assert set(idx.tolist()) == {0, 1}                      # width and depth: kind is at 0, branch inactive
    assert len(g.all_moves(plain)) == 2 + 2 + 1
    # A group probability for a group the genome lacks is ignored.
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    np.testing.assert_array_equal(g.mutate(ALL_GENES, rng_a, 0.3, {"resolution": 0.9}), g.mutate(ALL_GENES, rng_b, 0.3))


def test_evaluator_metrics_on_configs(toy_eval):
    configs = SPACE.to_configs(ALL_GENES[::7])
    m = toy_eval.metrics(configs)
    a = SPACE.analytic_efficiency(ALL_GENES[::7])
    np.testing.assert_array_equal(m["macs"], a["macs"])
    # fp32 (no profile precision): 4 bytes per activation value; no deployed Flash: `flash_bytes`
    np.testing.assert_allclose(m["peak_memory_kb"], 4 * a["peak_activation_bytes"] / 1024)
    np.testing.assert_allclose(m["flash_kb"], a["flash_bytes"] / 1024)
    np.testing.assert_allclose(m["latency_ms"], ToyLatency().predict_latency_ms(configs))
    np.testing.assert_allclose(m["accuracy"], toy_eval.accuracy_predictor.predict(configs))
    assert set(a) == set(ANALYTIC_METRICS) and not toy_eval.fast_path
    with pytest.raises(ValueError, match="width"):
        toy_eval.metrics({"width": 9, "depth": 1, "kind": "plain", "branch": 4, "act": "relu"})


def test_budget_ranges_and_check_budget(toy_eval):
    eff = toy_eval.efficiency_of(ALL_GENES)
    ranges = budget_ranges(toy_eval)
    for field, metric, scale in (("macs_m", "macs", 1e6), ("flash_kb", "flash_kb", 1), ("latency_ms", "latency_ms", 1)):
        assert not ranges[field]["exact"]
        assert ranges[field]["min"] == pytest.approx(eff[metric].min() / scale)
        assert ranges[field]["max"] == pytest.approx(eff[metric].max() / scale)
    assert SPACE.validate(ranges["macs_m"]["min_config"])["width"] == 8
    feasible = check_budget(toy_eval, Constraints(macs_m=ranges["macs_m"]["max"] / 2))
    assert len(feasible) >= 1
    with pytest.raises(InfeasibleBudgetError, match="macs_m") as info:
        check_budget(toy_eval, Constraints(macs_m=ranges["macs_m"]["min"] / 2))
    assert "'toy'" in str(info.value) and info.value.smallest["macs_m"] == pytest.approx(ranges["macs_m"]["min"])


@pytest.mark.parametrize("strategy", STRATEGY_REGISTRY.names())
def test_every_strategy_runs_on_the_toy_family(toy_eval, strategy):
    c = Constraints(macs_m=budget_ranges(toy_eval)["macs_m"]["max"] * 0.3, latency_ms=0.2)
    a = search(toy_eval, c, strategy, seed=1, **QUICK[strategy])
    b = search(toy_eval, c, strategy, seed=1, **QUICK[strategy])
    assert a.config == b.config and a.evaluations == b.evaluations > 0
    assert set(a.config) == set(NAMES) and SPACE.validate(a.config) == a.config
    assert a.predicted["macs"] / 1e6 <= c.macs_m and a.predicted["latency_ms"] <= c.latency_ms
    again = toy_eval.metrics(a.config)
    for key, value in a.predicted.items():
        assert value == pytest.approx(float(again[key][0])), key
    m = toy_eval.metrics_of(ALL_GENES)
    assert a.predicted["accuracy"] <= m["accuracy"][c.feasible(m)].max() + 1e-12
    assert a.summary()["config"] == a.config and a.history_configs([0])[0] in SPACE.to_configs(ALL_GENES)


def test_evolution_finds_the_toy_optimum(toy_eval):
    c = Constraints(macs_m=budget_ranges(toy_eval)["macs_m"]["max"] * 0.3)
    m = toy_eval.metrics_of(ALL_GENES)
    result = search(toy_eval, c, "evolution", seed=0, generations=30, population=30)
    assert result.predicted["accuracy"] == pytest.approx(m["accuracy"][c.feasible(m)].max())


class EncodedAccuracy:
    """The shipped accuracy estimator, fitted on the toy encoding, as the evaluator takes it."""

    def __init__(self, estimator):
        self.estimator = estimator

    def predict_encoded(self, x):
        return self.estimator.predict(x)

    def predict(self, configs):
        return self.predict_encoded(SPACE.genome.encode(SPACE.to_genes(configs)))

    def torch_module(self):
        return self.estimator.torch_module()


class FittedLatency:
    """A fitted latency model of the predictors package over the toy's MACs, as a profile."""

    name = "toy-device (fitted)"

    def __init__(self, model):
        self.model = model

    def predict_latency_ms(self, configs):
        return self.model.predict(SPACE.analytic_efficiency(SPACE.to_genes(configs))["macs"][:, None])


@pytest.fixture(scope="module")
def fitted_eval():
    from ofa_engine.predictors.accuracy import MLPEnsembleRegressor
    from ofa_engine.predictors.latency import MacsLinearModel
    from ofa_engine.predictors.metrics import kendall_tau, split_indices

    train, test = split_indices(len(ALL_GENES), 0.3, 0)
    x = SPACE.genome.encode(ALL_GENES)
    y = ToyAccuracy(SPACE).predict_encoded(x)
    accuracy = MLPEnsembleRegressor(hidden=(8,), epochs=150, ensemble=2, seed=0).fit(x[train], y[train])
    assert kendall_tau(accuracy.predict(x[test]), y[test]) > 0.8
    twin = accuracy.torch_module()(torch.from_numpy(x[test])).numpy()
    np.testing.assert_allclose(twin, accuracy.predict(x[test]), atol=1e-5)
    configs = SPACE.to_configs(ALL_GENES)
    measured = ToyLatency().predict_latency_ms(configs)
    macs = SPACE.analytic_efficiency(ALL_GENES)["macs"][:, None]
    latency = MacsLinearModel().fit(macs[train], measured[train])
    assert kendall_tau(latency.predict(macs[test]), measured[test]) > 0.8
    return Evaluator(SPACE, FittedLatency(latency), EncodedAccuracy(accuracy))


@pytest.mark.parametrize("strategy", STRATEGY_REGISTRY.names())
def test_every_strategy_runs_with_fitted_predictors_on_the_toy_family(fitted_eval, strategy):
    """The shipped accuracy estimator and a fitted latency model work on a family they never
    saw: they take encoded rows and feature rows, nothing MobileNetV3."""
    c = Constraints(macs_m=budget_ranges(fitted_eval)["macs_m"]["max"] * 0.3)
    result = search(fitted_eval, c, strategy, seed=0, **QUICK[strategy])
    assert SPACE.validate(result.config) == result.config and result.predicted["macs"] / 1e6 <= c.macs_m
    again = fitted_eval.metrics(result.config)
    assert again["accuracy"][0] == pytest.approx(result.predicted["accuracy"])
    assert again["latency_ms"][0] == pytest.approx(result.predicted["latency_ms"])
