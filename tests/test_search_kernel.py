"""The search's fast path computes the very numbers of the reference path: the genome kernel
(one row index into the exact tables, latency folded in) against `analyze`, the latency models'
`predict` on their feature rows and the profiles' `predict_latency_ms`, bit for bit; the
evaluator's subsets and evolution's deferred history against full evaluations."""

from __future__ import annotations

import numpy as np
import pytest

from ofa_engine.devices.profiles import list_profiles, load_profile
from ofa_engine.families import family_of
from ofa_engine.families.mbv3.analytics import analyze
from ofa_engine.families.mbv3.family import GenomeKernel, MobileNetV3Family
from ofa_engine.families.mbv3.latency_features import architecture_features, unique_blocks
from ofa_engine.families.mbv3.space import SearchSpace
from ofa_engine.predictors.latency.models import (AnalyticalMCUModel, BlockLinearModel, LookupTableModel,
                                                  MacsLinearModel)
from ofa_engine.search import Constraints, Evaluator, search
from ofa_engine.search.core import Problem
from ofa_engine.search.evaluator import EFFICIENCY_METRICS

SPACE = SearchSpace.preset("tiny-fmnist")


class ConstantAccuracy:
    def __init__(self, space: SearchSpace):
        self.space = space

    def predict(self, pop) -> np.ndarray:
        return np.full(len(pop["wid"]), 0.5)


def _genes(space: SearchSpace, n: int = 1500, seed: int = 0) -> np.ndarray:
    g = space.genome
    return np.concatenate([g.random(n, np.random.default_rng(seed)), g.uniform("min"), g.uniform("max")])


def _models(space: SearchSpace):
    rng = np.random.default_rng(0)
    names = architecture_features(space, space.sample_population(1, 0))[1]
    lut = LookupTableModel(space.name, {e["key"]: float(rng.uniform(0.01, 0.1)) for e in unique_blocks(space)},
                           scale=1.1, offset_ms=0.05)
    return [MacsLinearModel(0.12, 0.05), AnalyticalMCUModel(216.0, 0.5, 1.5), lut,
            BlockLinearModel(space.name, names, np.linspace(1e-7, 1e-6, len(names)), 0.03)]


@pytest.mark.parametrize("preset", ["tiny-fmnist", "ofa-mbv3-w1.0"])
def test_kernel_analytic_metrics_equal_analyze(preset):
    space = SearchSpace.preset(preset)
    family = MobileNetV3Family(space)
    genes = _genes(space)
    expected = analyze(space, family.decode(genes))
    got = family.efficiency_kernel()(genes, list(expected))
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].dtype == np.int64 and np.array_equal(got[key], expected[key]), key


@pytest.mark.parametrize("preset", ["tiny-fmnist", "ofa-mbv3-w1.0"])
@pytest.mark.parametrize("model", range(4), ids=["macs-linear", "analytical-mcu", "lut", "block-linear"])
def test_kernel_latency_equals_each_model_bit_for_bit(preset, model):
    space = SearchSpace.preset(preset)
    family = MobileNetV3Family(space)
    latency_model = _models(space)[model]
    genes = _genes(space)
    pop = family.decode(genes)
    reference = latency_model.predict_ms(space, pop)
    if latency_model.type != "block-linear":   # its predict_ms is a gather of folded tables
        assert np.array_equal(reference, latency_model.predict(latency_model.feature_rows(space, pop)))
    kernel = GenomeKernel(space, family.tables, latency_model.gather_form(space))
    assert np.array_equal(kernel(genes, ["latency_ms"])["latency_ms"], reference)
    # Asked together with the analytic metrics (the MACs models then reuse the MACs).
    both = kernel(genes, ["macs", "latency_ms"])
    assert np.array_equal(both["latency_ms"], reference)


@pytest.mark.parametrize("name", list_profiles())
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_evaluator_latency_equals_the_profiles_prediction(name, precision):
    profile = load_profile(name).for_precision(precision)
    space = SPACE if profile.applies_to(SPACE) else family_of(profile.space, fast=False).space
    profile = profile.for_space(space)
    evaluator = Evaluator(space, profile, ConstantAccuracy(space))
    kernel = evaluator.genome_kernel()
    # MobileNetV3 has a genome kernel (gathers of folded tables); a family without one (the ViT)
    # predicts through the profile itself: the same numbers either way.
    assert kernel is None if family_of(space, fast=False).family != "mbv3" else "latency_ms" in kernel.names
    genes = _genes(space, 1000, 3)
    batch = space.genome.to_population(genes) if kernel is not None else family_of(space, fast=False).decode(genes)
    expected = profile.predict_latency_ms(batch)
    assert np.array_equal(evaluator.latency_of(genes), expected)
    full = evaluator.efficiency_of(genes)
    assert list(full) == list(EFFICIENCY_METRICS) and np.array_equal(full["latency_ms"], expected)
    for subset in (("latency_ms",), ("flash_kb", "peak_memory_kb"), ("macs", "latency_ms")):
        part = evaluator.efficiency_of(genes, metrics=subset)
        assert list(part) == list(subset)
        for key in subset:
            assert np.array_equal(part[key], full[key]), key
    assert np.isnan(evaluator.efficiency_of(genes, latency=False)["latency_ms"]).all()


def test_a_profile_without_a_gather_form_uses_its_own_prediction():
    class Profile:   # a stand-in: only predict_latency_ms
        def predict_latency_ms(self, pop):
            return np.asarray(pop["image_size"], np.float64) * 0.01

    evaluator = Evaluator(SPACE, Profile(), "tiny-fmnist")
    genes = _genes(SPACE, 50)
    assert "latency_ms" not in evaluator.genome_kernel().names
    expected = SPACE.genome.to_population(genes)["image_size"] * 0.01
    assert np.array_equal(evaluator.efficiency_of(genes)["latency_ms"], expected)


def test_evolution_history_equals_full_evaluations():
    """Evolution records accuracy only and the history computes the rest at the end: the same
    numbers as evaluating every row, and feasible rows only (children are feasible by construction).
    Accuracy to float32 precision: the predictor's BLAS rounding depends on the batch it is in."""
    evaluator = Evaluator(SPACE, load_profile("stm32f746").for_space(SPACE), "tiny-fmnist")
    budget = Constraints(latency_ms=40.0, peak_memory_kb=200, flash_kb=600)
    result = search(evaluator, budget, "evolution", seed=2, generations=20)
    genes = result.history_genes.astype(np.int64)
    full = Problem(evaluator, budget, genes[:1]).evaluate(genes, 0)
    for key in EFFICIENCY_METRICS + ("feasible", "violation"):
        assert np.array_equal(result.history[key], full[key]), key
    np.testing.assert_allclose(result.history["accuracy"], full["accuracy"], rtol=1e-6)
    assert result.history["feasible"].all() and len(genes) == 100 + 20 * 100
