"""Search: exact efficiency tables, constraints, budget ranges and errors, every strategy on tiny
seeded stand-ins (deterministic, feasible, finding a brute-forced optimum)."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

from ofa_engine.families.mbv3.analytics import analyze, deployment_bytes
from ofa_engine.search import (STRATEGIES, Constraints, Evaluator, InfeasibleBudgetError, budget_ranges,
                               search)
from ofa_engine.search.core import check_budget
from ofa_engine.families.mbv3.tables import EfficiencyTables
from ofa_engine.search.strategies import STRATEGY_REGISTRY, make_strategy
from ofa_engine.search.strategies.evolution import Evolution
from ofa_engine.families.mbv3.space import SearchSpace, SubnetConfig

PRESETS = ["tiny-fmnist", "ofa-mbv3-w1.0", "ofa-mbv3-w1.2"]

# A 4,096-config space small enough to brute-force: 2 stages of up to 2 blocks.
MICRO = SearchSpace(
    name="micro", in_channels=1, num_classes=4, width_mults=(0.5, 1.0),
    base_widths=(8, 8, 16, 24, 64, 96), first_conv_stride=2, first_block_stride=1,
    first_block_act="relu", first_block_se=False, stage_strides=(2, 2), stage_acts=("relu", "h_swish"),
    stage_se=(False, True), kernel_sizes=(3, 5), expand_ratios=(3, 4), depths=(1, 2),
    resolutions=(16, 20), mean=(0.5,), std=(0.5,))


# ------------------------------------------------------------------ seeded stand-ins
class LinearAccuracy:
    """sigmoid(w . encoding + b) with seeded weights; `.torch_module()` is the same function."""

    def __init__(self, space: SearchSpace, seed: int = 0, encoded: bool = True):
        self.space = space
        rng = np.random.default_rng(seed)
        self.w = (rng.random(space.encoding_size) * 0.3).astype(np.float32)
        self.b = -2.0
        if encoded:
            self.predict_encoded = self._predict_encoded

    def _predict_encoded(self, x):
        return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ self.w + self.b)))

    def predict(self, pop):
        return self._predict_encoded(self.space.encode(pop))

    def torch_module(self):
        lin = torch.nn.Linear(self.space.encoding_size, 1)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(self.w)[None])
            lin.bias.fill_(self.b)
        return torch.nn.Sequential(lin, torch.nn.Sigmoid(), torch.nn.Flatten(0))


class MacsLatency:
    """latency_ms = a * MACs(M) + b (+ c / MACs(M): not monotone, for joint-infeasibility tests)."""

    name = "stand-in"

    def __init__(self, space: SearchSpace, a: float = 0.1, b: float = 0.05, inverse: float = 0.0):
        self.space, self.a, self.b, self.inverse = space, a, b, inverse

    def predict_latency_ms(self, pop):
        macs = analyze(self.space, pop)["macs"] / 1e6
        return self.a * macs + self.b + self.inverse / macs


def make_evaluator(space=MICRO, **latency):
    return Evaluator(space, MacsLatency(space, **latency), LinearAccuracy(space))


@pytest.fixture(scope="module")
def tiny_eval():
    return make_evaluator(SearchSpace.preset("tiny-fmnist"))


@pytest.fixture(scope="module")
def micro_eval():
    return make_evaluator(MICRO)


def all_genes(space) -> np.ndarray:
    g = space.genome
    grids = np.meshgrid(*[np.arange(c) for c in g.cardinality], indexing="ij")
    return np.stack([x.reshape(-1) for x in grids], 1)


# Fast settings so that each strategy runs in well under a second here.
QUICK = {"grid": {}, "random": {"samples": 300}, "evolution": {"generations": 30},
         "rl": {"iterations": 40, "batch": 32}, "gradient": {"steps": 30, "samples": 8},
         "nsga2": {"generations": 20, "population": 40}}


# ------------------------------------------------------------------ evaluator
@pytest.mark.parametrize("name", PRESETS)
def test_tables_equal_analyze(name):
    space = SearchSpace.preset(name)
    tables = EfficiencyTables(space)
    genes = np.concatenate([tables.genome.random(1500, np.random.default_rng(3)),
                            tables.genome.uniform("min"), tables.genome.uniform("max")])
    expected = analyze(space, tables.genome.to_population(genes))
    got = tables.compute(genes)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_tables_equal_analyze_on_every_micro_config():
    genes = all_genes(MICRO)
    tables = EfficiencyTables(MICRO)
    expected = analyze(MICRO, tables.genome.to_population(genes))
    for key, value in tables.compute(genes).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


@pytest.mark.parametrize("name", PRESETS)
def test_genome_roundtrip_and_encoding(name):
    space = SearchSpace.preset(name)
    g = space.genome
    genes = g.random(200, np.random.default_rng(1))
    pop = g.to_population(genes)
    np.testing.assert_array_equal(g.from_population(pop), genes)
    np.testing.assert_array_equal(g.encode(genes), space.encode(pop))
    cfgs = g.to_configs(genes[:5])
    np.testing.assert_array_equal(g.from_configs(cfgs), genes[:5])


def test_evaluator_metrics_units_and_fallback(tiny_eval):
    space = tiny_eval.space.space
    pop = space.sample_population(64, np.random.default_rng(2))
    m = tiny_eval.metrics(pop)
    a = analyze(space, pop)
    np.testing.assert_array_equal(m["macs"], a["macs"])
    # Memory is that of a file in the evaluator's precision (the profile's: fp32): 4 bytes per
    # activation value, the float file's weights and biases (tests/test_deployment_bytes.py).
    assert tiny_eval.precision == "fp32"
    np.testing.assert_allclose(m["peak_memory_kb"], 4 * a["peak_activation_bytes"] / 1024)
    np.testing.assert_allclose(m["flash_kb"], deployment_bytes(space, pop, "fp32")["flash_bytes"] / 1024)
    int8 = Evaluator(space, tiny_eval.profile, tiny_eval.accuracy_predictor, precision="int8").metrics(pop)
    np.testing.assert_allclose(int8["peak_memory_kb"], a["peak_activation_bytes"] / 1024)
    np.testing.assert_allclose(int8["flash_kb"], deployment_bytes(space, pop, "int8")["flash_bytes"] / 1024)
    assert (int8["flash_kb"] > a["flash_bytes"] / 1024).all()   # scales and zero points too
    with pytest.raises(ValueError, match="precision = 'int4'; allowed: fp32, int8"):
        Evaluator(space, tiny_eval.profile, tiny_eval.accuracy_predictor, precision="int4")
    np.testing.assert_allclose(m["latency_ms"], tiny_eval.profile.predict_latency_ms(pop))
    np.testing.assert_allclose(m["accuracy"], tiny_eval.accuracy_predictor.predict(pop))
    slow = Evaluator(space, tiny_eval.profile, LinearAccuracy(space, encoded=False), fast=False)
    assert not slow.fast_path and tiny_eval.fast_path
    for key, value in slow.metrics(pop).items():
        np.testing.assert_allclose(value, m[key], err_msg=key)
    one = tiny_eval.metrics(space.largest())
    assert one["macs"].shape == (1,)


def test_evaluator_rejects_mismatched_space():
    class Other:
        space = "ofa-mbv3-w1.0"
        def predict(self, pop):
            return np.zeros(len(pop["wid"]))
    with pytest.raises(ValueError, match="ofa-mbv3-w1.0"):
        Evaluator("tiny-fmnist", None, Other())


# ------------------------------------------------------------------ constraints
def test_constraints_validation_and_checks():
    with pytest.raises(ValueError, match="latency_ms"):
        Constraints(latency_ms=-1)
    with pytest.raises(ValueError, match="macs_m"):
        Constraints(macs_m=float("nan"))
    with pytest.raises(ValueError, match="unknown constraint"):
        Constraints.from_dict({"latency": 3})
    c = Constraints(macs_m=2, peak_memory_kb=10)
    metrics = {"macs": np.array([1e6, 3e6, 2e6]), "peak_memory_kb": np.array([5.0, 5.0, 11.0])}
    np.testing.assert_array_equal(c.feasible(metrics), [True, False, False])
    np.testing.assert_allclose(c.violation(metrics), [0.0, 0.5, 0.1])
    assert c.to_dict() == {"peak_memory_kb": 10.0, "macs_m": 2.0}
    assert not Constraints() and c


def test_device_memory_tightens_constraints():
    class Profile:
        memory = {"sram_kb": 256, "flash_kb": 1024}
    c = Constraints(peak_memory_kb=100, latency_ms=5).with_device_memory(Profile())
    assert c.to_dict() == {"latency_ms": 5.0, "peak_memory_kb": 100.0, "flash_kb": 1024.0}
    assert Constraints().with_device_memory(Profile()).peak_memory_kb == 256


# ------------------------------------------------------------------ ranges and infeasible budgets
def test_budget_ranges_exact_on_micro(micro_eval):
    genes = all_genes(MICRO)
    eff = micro_eval.efficiency_of(genes)
    acc = micro_eval.accuracy_of(genes)
    ranges = budget_ranges(micro_eval)
    for field, metric, scale in (("macs_m", "macs", 1e6), ("params_m", "params", 1e6),
                                 ("flash_kb", "flash_kb", 1), ("peak_memory_kb", "peak_memory_kb", 1)):
        assert ranges[field]["exact"]
        assert ranges[field]["min"] == pytest.approx(eff[metric].min() / scale, rel=1e-12)
        assert ranges[field]["max"] == pytest.approx(eff[metric].max() / scale, rel=1e-12)
    # Estimates on a black box: never better than the truth, and here they reach it.
    assert ranges["latency_ms"]["min"] == pytest.approx(eff["latency_ms"].min())
    assert ranges["latency_ms"]["max"] == pytest.approx(eff["latency_ms"].max())
    assert ranges["accuracy"]["max"] == pytest.approx(acc.max())
    cfg = SubnetConfig.from_dict(ranges["macs_m"]["min_config"])
    assert analyze(MICRO, cfg)["macs"] / 1e6 == pytest.approx(ranges["macs_m"]["min"])


def test_budget_ranges_tiny_fmnist(tiny_eval):
    ranges = budget_ranges(tiny_eval)
    space = tiny_eval.space.space
    small, large = analyze(space, space.smallest()), analyze(space, space.largest())
    assert ranges["macs_m"]["min"] <= small["macs"] / 1e6 and ranges["macs_m"]["max"] >= large["macs"] / 1e6
    sample = tiny_eval.efficiency(space.sample_population(2000, np.random.default_rng(0)))
    assert ranges["peak_memory_kb"]["min"] <= sample["peak_memory_kb"].min()
    assert ranges["latency_ms"]["min"] <= sample["latency_ms"].min()


def test_infeasible_budget_states_smallest_value(micro_eval):
    smallest = budget_ranges(micro_eval)["macs_m"]["min"]
    with pytest.raises(InfeasibleBudgetError) as info:
        search(micro_eval, Constraints(macs_m=smallest * 0.5, params_m=100), "random")
    message = str(info.value)
    assert "macs_m" in message and f"{smallest:.4g}" in message and "params_m" not in message
    assert info.value.smallest == {"macs_m": pytest.approx(smallest)}
    # Exactly the minimum is feasible.
    result = search(micro_eval, Constraints(macs_m=smallest), "random", samples=10)
    assert result.predicted["macs"] / 1e6 <= smallest


def test_infeasible_latency_and_joint_budget():
    # Latency falls as MACs grow (inverse term): each bound alone is achievable, both at once not.
    ev = make_evaluator(MICRO, a=0.0, b=0.0, inverse=1.0)
    ranges = budget_ranges(ev)
    with pytest.raises(InfeasibleBudgetError, match="latency_ms"):
        search(ev, Constraints(latency_ms=ranges["latency_ms"]["min"] * 0.5), "evolution")
    with pytest.raises(InfeasibleBudgetError, match="at once") as info:
        search(ev, Constraints(latency_ms=ranges["latency_ms"]["min"] * 1.01,
                               macs_m=ranges["macs_m"]["min"] * 1.01), "evolution")
    assert set(info.value.smallest) == {"latency_ms", "macs_m"}


def test_latency_bound_needs_profile():
    ev = Evaluator(MICRO, None, LinearAccuracy(MICRO))
    with pytest.raises(ValueError, match="profile"):
        search(ev, Constraints(latency_ms=1), "random")
    assert np.isnan(search(ev, Constraints(macs_m=5), "random", samples=20).predicted["latency_ms"] or np.nan)


# ------------------------------------------------------------------ strategies
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_deterministic_feasible_consistent(tiny_eval, strategy):
    ranges = budget_ranges(tiny_eval)
    c = Constraints(latency_ms=ranges["latency_ms"]["min"] * 2.5, peak_memory_kb=ranges["peak_memory_kb"]["max"] / 3)
    a = search(tiny_eval, c, strategy, seed=3, **QUICK[strategy])
    b = search(tiny_eval, c, strategy, seed=3, **QUICK[strategy])
    assert a.config == b.config and a.evaluations == b.evaluations
    for key in a.history:
        np.testing.assert_array_equal(a.history[key], b.history[key], err_msg=key)
    assert a.predicted["latency_ms"] <= c.latency_ms and a.predicted["peak_memory_kb"] <= c.peak_memory_kb
    again = tiny_eval.metrics(a.config)
    for key, value in a.predicted.items():
        assert value == pytest.approx(float(again[key][0])), key
    h = a.history
    assert a.evaluations == len(h["accuracy"]) == len(a.history_genes) > 0
    assert {len(v) for v in h.values()} == {a.evaluations}
    assert a.predicted["accuracy"] == pytest.approx(h["accuracy"][h["feasible"]].max())
    rows = np.nonzero(h["feasible"])[0][:3]
    np.testing.assert_allclose(tiny_eval.metrics(a.history_configs(rows))["accuracy"], h["accuracy"][rows])
    assert a.wall_time_s > 0 and a.summary()["config"] == a.config.to_dict()


def brute_force_best(ev, constraints):
    genes = all_genes(ev.space)
    m = ev.metrics_of(genes)
    ok = constraints.feasible(m)
    return float(m["accuracy"][ok].max())


@pytest.mark.parametrize("strategy,options", [
    ("evolution", {"generations": 60}), ("nsga2", {"generations": 60}),
    ("rl", {"iterations": 150}), ("gradient", {"steps": 60})])
def test_strategy_finds_the_optimum(micro_eval, strategy, options):
    c = Constraints(macs_m=budget_ranges(micro_eval)["macs_m"]["max"] * 0.4)
    best = brute_force_best(micro_eval, c)
    result = search(micro_eval, c, strategy, seed=0, **options)
    assert result.predicted["accuracy"] == pytest.approx(best, abs=1e-9)


def test_grid_is_exhaustive_over_its_lattice(micro_eval):
    c = Constraints(macs_m=budget_ranges(micro_eval)["macs_m"]["max"] * 0.4)
    result = search(micro_eval, c, "grid", groups=2)
    points = micro_eval.space.lattice(2)
    m = micro_eval.metrics_of(points)
    assert result.evaluations == len(points) == len(np.unique(points, axis=0))
    assert result.predicted["accuracy"] == pytest.approx(m["accuracy"][c.feasible(m)].max())
    # groups=None picks the finest lattice within max_points.
    assert search(micro_eval, c, "grid", max_points=100).options["groups"] == 1


def test_nsga2_pareto_front(tiny_eval):
    c = Constraints(macs_m=budget_ranges(tiny_eval)["macs_m"]["max"] / 3)
    result = search(tiny_eval, c, "nsga2", seed=1, generations=30, population=40)
    p = result.pareto
    assert p["objective"] == "macs" and len(p["configs"]) >= 2
    assert np.all(np.diff(p["macs"]) >= 0)
    assert np.all(p["macs"] <= c.macs_m * 1e6)
    acc, cost = p["accuracy"], p["macs"]
    for i in range(len(acc)):   # nobody on the front is dominated by another member
        assert not np.any((acc >= acc[i]) & (cost <= cost[i]) & ((acc > acc[i]) | (cost < cost[i])))
    assert result.summary()["pareto"]["objective"] == "macs"


def test_gradient_projection_meets_a_tight_budget(tiny_eval):
    ranges = budget_ranges(tiny_eval)
    c = Constraints(latency_ms=ranges["latency_ms"]["min"] * 1.3, flash_kb=ranges["flash_kb"]["min"] * 2)
    result = search(tiny_eval, c, "gradient", seed=0, steps=20)
    assert result.predicted["latency_ms"] <= c.latency_ms and result.predicted["flash_kb"] <= c.flash_kb


def test_strategy_errors(micro_eval):
    with pytest.raises(ValueError, match="unknown strategy 'sa'"):
        search(micro_eval, Constraints(), "sa")
    with pytest.raises(ValueError, match="no option"):
        search(micro_eval, Constraints(), "evolution", populaton=10)
    with pytest.raises(ValueError, match="generations"):
        make_strategy("evolution", generations=0)
    with pytest.raises(ValueError, match="objective"):
        search(micro_eval, Constraints(), "nsga2", objective="accuracy")


@pytest.mark.parametrize("strategy,options,pattern", [
    ("evolution", {"mutate_prob": float("inf")}, r"'evolution' option 'mutate_prob' = inf; allowed: a probability"),
    ("nsga2", {"resolution_mutate_prob": 1.5}, r"'resolution_mutate_prob' = 1\.5; allowed: a probability: a number in \[0, 1\]"),
    ("rl", {"lr": float("nan")}, r"'rl' option 'lr' = nan; allowed: a finite number >= 0"),
    ("evolution", {"population": 1000000000}, r"'population' = 1000000000; allowed: .*MAX_POPULATION = 10000"),
    ("random", {"samples": 10**9}, r"'samples' = 1000000000; allowed: .*MAX_BATCH = 100000"),
    ("nsga2", {"population": 10**6}, r"MAX_NSGA2_POPULATION = 2000"),
    ("gradient", {"tau_end": 0.0}, r"'tau_end' = 0\.0; allowed: a finite number > 0"),
    ("evolution", {"generations": True}, r"'generations' = True; allowed: an integer >= 1"),
    ("evolution", {"generations": 2.0}, r"'generations' = 2\.0; allowed: an integer >= 1"),
    ("grid", {"groups": 0}, r"'grid' option 'groups' = 0; allowed: an integer from 1"),
])
def test_strategy_option_errors_name_strategy_option_value_and_allowed(strategy, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_strategy(strategy, **options)


def test_strategy_options_accept_numpy_numbers_and_ints_for_floats():
    s = make_strategy("evolution", population=np.int64(20), mutate_prob=np.float32(0.25), parent_ratio=1)
    assert s.options["population"] == 20 and type(s.options["population"]) is int
    assert s.options["mutate_prob"] == 0.25 and s.options["parent_ratio"] == 1.0


def test_strategies_live_in_the_registry():
    assert STRATEGIES == ("grid", "random", "evolution", "rl", "gradient", "nsga2")
    assert STRATEGIES == tuple(STRATEGY_REGISTRY.names())
    for name, cls in STRATEGY_REGISTRY.items():
        assert cls.name == name and make_strategy(name).options == cls.Options().model_dump()


def test_one_encoding_and_a_seeded_genome_as_before(tiny_eval):
    space = SearchSpace.preset("tiny-fmnist")
    g = space.genome
    rng = np.random.default_rng(0)
    a, b = g.random(64, rng), g.random(64, rng)
    c = g.crossover(a, b, rng)
    m = g.mutate(c, rng, 0.1, {"resolution": 0.5})
    m2 = g.mutate(m, rng, 0.3)
    # Pinned from the genome before the interface split (same rng calls, same rows).
    assert a[0].tolist() == [1, 1, 0, 0, 1, 1, 1, 2, 1, 2, 2, 0, 2, 0, 2, 0, 2, 1, 0, 1, 0, 0, 2, 1, 1, 1,
                             2, 2, 2, 1, 2, 1, 0, 2, 1, 0, 1]
    digest = hashlib.sha256(b"".join(x.tobytes() for x in (a, b, c, m, m2))).hexdigest()
    assert digest == "300adac0dda6179effe51e741d6a1e33409283d37c27a01149a47ea85e39acc5"
    assert int(m2.sum()) == 2223
    assert hashlib.sha256(g.encode(m2).tobytes()).hexdigest() == \
        "ddbdec64e09c2ef0d981198899dedc1a92456c2e3416961f414697cd37c5ddd8"
    moves, idx = g.neighbours(m2[:1], -1)
    assert idx.tolist() == [0, 1, 5, 8, 11, 13, 14, 16, 19, 22, 23, 25, 26, 28, 31, 32, 33, 34, 35]
    assert len(g.all_moves(m2[:1])) == 54
    # One encoding: the space's, the genome's and the evaluator's space's agree.
    configs = g.to_configs(m2)
    np.testing.assert_array_equal(space.encode(configs), g.encode(m2))
    np.testing.assert_array_equal(tiny_eval.space.genome.encode(m2), g.encode(m2))


@pytest.mark.parametrize("name", ["tiny-fmnist", "ofa-mbv3-w1.0"])
def test_variation_and_active_mask_equal_their_reference_forms(name):
    # mutate / crossover compute only what they keep and the active mask is tabulated by depth:
    # the same numbers as the plain forms, for the same draws.
    g = SearchSpace.preset(name).genome
    genes = g.random(300, np.random.default_rng(1))
    np.testing.assert_array_equal(g.active(genes), g._active_genes(genes))
    p, divisor = g._mutation_probs(0.1, (("resolution", 0.5),))
    u = np.random.default_rng(2).random(genes.shape)
    fresh = np.minimum((u / divisor * g.cardinality).astype(np.int64), g.cardinality - 1)
    for rows in (genes, genes[::2], genes.astype(np.int8)):
        expected = np.where(u[:len(rows)] < p, fresh[:len(rows)], rows)
        got = g.mutate(rows, np.random.default_rng(2), 0.1, {"resolution": 0.5})
        assert got.dtype == np.int64 and np.array_equal(got, expected)
    other = g.random(300, np.random.default_rng(3))
    expected = np.where(np.random.default_rng(4).random(genes.shape) < 0.5, genes, other)
    np.testing.assert_array_equal(g.crossover(genes, other, np.random.default_rng(4)), expected)
    # offspring: mutants then crossovers of chosen rows, the draws and children of the two calls.
    rows = np.sort(np.random.default_rng(5).integers(0, 300, 120))
    for n_mutants in (0, 47, 120):
        rng_a, rng_b = np.random.default_rng(6), np.random.default_rng(6)
        expected = np.concatenate([g.mutate(genes[rows[:n_mutants]], rng_a, 0.1, {"resolution": 0.5}),
                                   g.crossover(genes[rows[n_mutants:]], other[rows[n_mutants:]], rng_a)])
        got = g.offspring(genes, other, rows, n_mutants, rng_b, 0.1, {"resolution": 0.5})
        assert got.dtype == np.int64 and np.array_equal(got, expected)
        assert rng_a.random() == rng_b.random()


def test_history_merges_deferred_and_evaluated_batches(tiny_eval):
    from ofa_engine.search.core import Problem
    g = tiny_eval.genome
    constraints = Constraints(macs_m=5.0)
    genes = g.random(40, np.random.default_rng(0))
    problem = Problem(tiny_eval, constraints, g.uniform("min"))
    problem.evaluate_accuracy(genes[:10], 0)
    problem.evaluate(genes[10:25], 1)
    problem.evaluate_accuracy(genes[25:], 2)
    hist, hist_genes = problem.history()
    assert hist_genes.dtype == np.int8 and np.array_equal(hist_genes, genes)
    assert hist["iteration"].dtype == np.int32 and hist["iteration"].tolist() == [0] * 10 + [1] * 15 + [2] * 15
    expected = tiny_eval.metrics_of(genes)
    for key in expected:
        np.testing.assert_array_equal(hist[key], expected[key])
    np.testing.assert_array_equal(hist["feasible"], constraints.feasible(expected))
    problem.evaluate(genes[:3], 3)            # a batch after the history was read
    again, _ = problem.history()
    assert len(again["accuracy"]) == 43 and np.array_equal(again["accuracy"][:40], hist["accuracy"])
    assert problem.evaluations == 43 and problem.predictor_calls == 40


def test_evolution_defaults_are_ofa_defaults():
    d = Evolution.Options().model_dump()
    assert (d["population"], d["generations"], d["parent_ratio"], d["mutation_ratio"], d["mutate_prob"],
            d["resolution_mutate_prob"]) == (100, 500, 0.25, 0.5, 0.1, 0.5)


def test_evolution_full_defaults_evaluations(micro_eval):
    result = search(micro_eval, Constraints(macs_m=2.0), "evolution")
    assert result.evaluations == 100 + 500 * 100
    assert result.history_genes.dtype == np.int8 and result.history["iteration"].max() == 500


def test_search_is_thread_safe(tiny_eval):
    c = Constraints(macs_m=budget_ranges(tiny_eval)["macs_m"]["max"] / 4)
    expected = search(tiny_eval, c, "evolution", seed=5, generations=20).config
    results = [None] * 4

    def work(i):
        results[i] = search(tiny_eval, c, "evolution", seed=5, generations=20).config

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
