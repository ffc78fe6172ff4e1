"""The ViT's search batches (`ViTFamily.decode` -> `ViTPopulation`) give exactly the results of
the plain configs path (the interface's default `decode`: a list of validated `ViTConfig`s), for
every strategy on every profile that applies to vit-fmnist; and the population's own contract."""

import dataclasses

import numpy as np
import pytest

from ofa_engine.devices.profiles import load_profile
from ofa_engine.families.vit.family import ViTFamily
from ofa_engine.families.vit.genome import ViTPopulation
from ofa_engine.families.vit.latency_features import ViTLatencyFeatures
from ofa_engine.packages import load_package
from ofa_engine.predictors.accuracy import MacsProxy
from ofa_engine.search.constraints import Constraints
from ofa_engine.search.core import search
from ofa_engine.search.evaluator import Evaluator
from ofa_engine.space.interface import DiscreteSearchSpace

PROFILES = [("cpu-ort-1t-vit-fmnist", "fp32"), ("cpu-ort-1t-vit-fmnist", "int8"),
            ("stm32f412", "int8"), ("stm32f746", "int8"), ("stm32h743", "int8")]
SMALL = {"evolution": dict(population=16, generations=4), "random": dict(samples=120, batch=40),
         "grid": dict(max_points=200, batch=100), "nsga2": dict(population=16, generations=4),
         "rl": dict(iterations=6, batch=16)}


@pytest.fixture(scope="module")
def package():
    return load_package("vit-fmnist")


def _evaluator(package, name, precision, accuracy=None):
    profile = load_profile(name).for_precision(precision).for_space(package.space)
    return Evaluator(package.space, profile, accuracy or package.accuracy_predictor, precision=precision)


def _bound(evaluator):
    """A latency bound that 40 % of random subnets meet."""
    genes = evaluator.genome.random(200, np.random.default_rng(1))
    return float(np.quantile(evaluator.latency_of(genes), 0.4))


def _both(monkeypatch, evaluator, strategy, options):
    """(result through the population, result through plain configs) of one seeded search."""
    constraints = Constraints(latency_ms=_bound(evaluator))
    fast = search(evaluator, constraints, strategy, seed=0, **options)
    with monkeypatch.context() as patch:
        patch.setattr(ViTFamily, "decode", DiscreteSearchSpace.decode)
        assert isinstance(evaluator.space.decode(evaluator.genome.uniform("min")[None]), list)
        plain = search(evaluator, constraints, strategy, seed=0, **options)
    return fast, plain


def _assert_same(fast, plain):
    assert fast.config == plain.config
    assert fast.predicted == plain.predicted           # bit for bit
    assert fast.evaluations == plain.evaluations and fast.predictor_calls == plain.predictor_calls
    assert np.array_equal(fast.history_genes, plain.history_genes)
    assert list(fast.history) == list(plain.history)
    for key, value in fast.history.items():
        assert np.array_equal(value, plain.history[key], equal_nan=value.dtype.kind == "f"), key
    assert (fast.pareto is None) == (plain.pareto is None)
    if fast.pareto is not None:
        assert fast.pareto["configs"] == plain.pareto["configs"]
        assert np.array_equal(fast.pareto["rows"], plain.pareto["rows"])


@pytest.mark.parametrize("name,precision", PROFILES, ids=[f"{n}-{p}" for n, p in PROFILES])
@pytest.mark.parametrize("strategy", list(SMALL))
def test_search_through_population_equals_configs(monkeypatch, package, name, precision, strategy):
    _assert_same(*_both(monkeypatch, _evaluator(package, name, precision), strategy, SMALL[strategy]))


def test_gradient_search_through_population_equals_configs(monkeypatch, package):
    evaluator = _evaluator(package, "cpu-ort-1t-vit-fmnist", "fp32")
    _assert_same(*_both(monkeypatch, evaluator, "gradient", dict(steps=5, samples=4, polish_rounds=2)))


@pytest.mark.parametrize("name,precision", [PROFILES[0], PROFILES[3]], ids=["cpu", "stm32f746"])
def test_macs_proxy_predict_takes_the_population(monkeypatch, package, name, precision):
    # MacsProxy has no `predict_encoded`: the evaluator hands it `decode`'s batch.
    evaluator = _evaluator(package, name, precision, MacsProxy(package.space))
    _assert_same(*_both(monkeypatch, evaluator, "evolution", SMALL["evolution"]))


def test_population_is_its_configs_and_gives_its_genes_back(package):
    family = ViTFamily(package.space)
    genes = family.genome.random(50, np.random.default_rng(0))
    pop = family.decode(genes)
    configs = family.to_configs(genes)
    assert isinstance(pop, ViTPopulation) and len(pop) == 50
    assert list(pop) == configs and pop[3] == configs[3] and pop[-1] == configs[-1]
    assert list(pop[10:20]) == configs[10:20] and isinstance(pop[10:20], ViTPopulation)
    assert np.array_equal(family.to_genes(pop), genes) and np.array_equal(family.to_genes(configs), genes)
    assert not family.to_genes(pop).flags.writeable
    genes[0, 0] = (genes[0, 0] + 1) % family.genome.cardinality[0]     # the population holds a copy
    assert not np.array_equal(pop.genes, genes)
    for metric, value in family.analyze(pop).items():
        assert np.array_equal(value, family.analyze(configs)[metric]), metric
    assert np.array_equal(family.encode(pop), family.encode(configs))


def test_latency_features_take_and_count_the_population(package):
    features = ViTLatencyFeatures(package.space)
    genes = package.space.genome.random(30, np.random.default_rng(2))
    pop, configs = package.space.genome.to_population(genes), package.space.genome.to_configs(genes)
    index = np.array([4, 0, 29, 4])
    assert features.count(pop) == features.count(configs) == 30
    taken = features.take(pop, index)
    assert isinstance(taken, ViTPopulation) and list(taken) == features.take(configs, index)
    for tables in (features.feature_tables(), features.macs_tables()):
        assert np.array_equal(features.gather(pop, *tables), features.gather(configs, *tables))
    for got, expected in zip(features.int8_scale_counts(pop), features.int8_scale_counts(configs)):
        assert np.array_equal(got, expected)


def test_population_of_another_space_is_validated_as_configs(package):
    genome = package.space.genome
    pop = genome.to_population(genome.uniform("max")[None])
    renamed = dataclasses.replace(package.space, name=package.space.name + "-renamed")
    assert np.array_equal(renamed.genome.from_configs(pop), renamed.genome.from_configs(list(pop)))
    narrower = dataclasses.replace(package.space, embed_dims=package.space.embed_dims[:-1])
    with pytest.raises(ValueError, match="config field 'embed_dim'"):
        narrower.genome.from_configs(pop)


@pytest.mark.parametrize("row,gene,value", [(0, 0, -1), (3, 1, 99)])
def test_population_refuses_genes_out_of_range(package, row, gene, value):
    genome = package.space.genome
    genes = genome.random(5, np.random.default_rng(0))
    genes[row, gene] = value
    with pytest.raises(ValueError, match=rf"gene '{genome.names[gene]}' of row {row} = {value}; allowed: 0 to"):
        genome.to_population(genes)
