"""Every registry of the engine, and every entry of each: one pattern (ofa_engine.registry), and
each registered thing works through the public API."""

from __future__ import annotations

import numpy as np
import pytest

from ofa_engine.cli import main
from ofa_engine.cli.args import COMMANDS
from ofa_engine.devices.profiles import BUNDLED_PROFILES, load_profile
from ofa_engine.families import FAMILIES, search_space
from ofa_engine.families.mbv3.space import PRESETS
from ofa_engine.predictors.latency import LATENCY_MODELS
from ofa_engine.registry import Registry
from ofa_engine.search import STRATEGIES
from ofa_engine.search.strategies import STRATEGY_REGISTRY
from ofa_engine.space.interface import DiscreteSearchSpace

PRESET_NAMES = [(family, preset) for family, cls in FAMILIES.items() for preset in cls.preset_names()]


def test_the_registry_pattern():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2 and reg.get("b") is b
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a", 3)
    with pytest.raises(ValueError, match="unknown thing 'c'; known: a, b"):
        reg.get("c")
    assert reg.unregister("a") == 1 and reg.names() == ["b"]


def test_a_registry_fills_itself_once_on_first_lookup():
    calls = []
    reg: Registry[int] = Registry("thing", loader=lambda: calls.append(reg.register("x", 1)))
    assert calls == []
    assert reg.get("x") == 1 and reg.names() == ["x"] and calls == [1]


@pytest.mark.parametrize("family,preset", PRESET_NAMES)
def test_every_preset_of_every_family_is_a_search_space(family, preset):
    space = search_space(preset)
    assert isinstance(space, DiscreteSearchSpace) and isinstance(space, FAMILIES.get(family))
    assert space.name == preset and PRESETS.get(preset).name == preset
    genes = space.genome.random(64, np.random.default_rng(0))
    again = space.to_genes(space.to_configs(genes))
    canonical = space.genome.canonical
    assert np.array_equal(canonical(again), canonical(genes))
    metrics = space.analytic_efficiency(genes)
    assert all(np.all(metrics[k] > 0) for k in metrics)


def test_an_unknown_space_names_the_families_and_presets():
    with pytest.raises(ValueError, match=r"unknown search space 'nope'; known: .*tiny-fmnist.*families: mbv3"):
        search_space("nope")


@pytest.mark.parametrize("name", STRATEGY_REGISTRY.names())
def test_every_registered_strategy_is_named_once_and_has_options(name):
    cls = STRATEGY_REGISTRY.get(name)
    assert cls.name == name and name in STRATEGIES
    assert cls(**{}).options  # the defaults validate


def test_strategies_tuple_is_the_registry_in_order():
    assert tuple(STRATEGY_REGISTRY.names()) == STRATEGIES


@pytest.mark.parametrize("name", BUNDLED_PROFILES.names())
def test_every_bundled_profile_loads_from_the_registry(name):
    assert BUNDLED_PROFILES.get(name).is_file()
    assert load_profile(name).name == name


@pytest.mark.parametrize("kind", LATENCY_MODELS.names())
def test_every_latency_model_type_is_a_class_of_that_type(kind):
    assert isinstance(LATENCY_MODELS.get(kind), type)


@pytest.mark.parametrize("command", COMMANDS.names())
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: python -m ofa_engine " + command in capsys.readouterr().out


def test_a_lookup_during_another_threads_load_waits_for_the_whole_registry():
    import threading
    import time
    started = threading.Event()

    def slow_loader():
        registry.register("a", 1)
        started.set()
        time.sleep(0.2)
        registry.register("b", 2)

    registry = Registry("thing", loader=slow_loader)
    first = threading.Thread(target=registry.names)
    first.start()
    started.wait(5)
    assert registry.names() == ["a", "b"]
    first.join()
