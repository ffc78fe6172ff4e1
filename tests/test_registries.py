"""Every registry of the engine, and every entry of each: one pattern (ofa_engine.registry), and
each registered thing works through the public API."""

from __future__ import annotations

import threading

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
    assert space.name == preset and FAMILIES.get(family).preset(preset).name == preset
    genes = space.genome.random(64, np.random.default_rng(0))
    again = space.to_genes(space.to_configs(genes))
    canonical = space.genome.canonical
    assert np.array_equal(canonical(again), canonical(genes))
    metrics = space.analytic_efficiency(genes)
    assert all(np.all(metrics[k] > 0) for k in metrics)


def test_an_unknown_space_names_the_families_and_presets():
    with pytest.raises(ValueError, match=r"unknown search space 'nope'; known: .*tiny-fmnist.*vit-fmnist.*families: mbv3, proxyless, resnet, vit"):
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
def test_every_latency_model_type_writes_its_registered_name_and_is_rebuilt_as_that_class(kind):
    """A profile's `latency_model.type` picks the class from the registry: each class writes the
    name it is registered under, and its dict (through JSON) rebuilds an equal model of it."""
    import json

    from ofa_engine.predictors.latency import LatencyModel, latency_model_from_dict
    from tests.test_latency_models import SPACE, _models
    cls = LATENCY_MODELS.get(kind)
    assert issubclass(cls, LatencyModel) and cls.type == kind
    (model,) = [m for m in _models() if isinstance(m, cls)]
    data = json.loads(json.dumps(model.to_dict()))
    assert data["type"] == kind
    again = latency_model_from_dict(data, SPACE)
    assert type(again) is cls and again == model


@pytest.mark.parametrize("command", COMMANDS.names())
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: python -m ofa_engine " + command in capsys.readouterr().out


def test_a_lookup_during_another_threads_load_waits_for_the_whole_registry():
    """The first thread's loader is held half-way (one name registered) until the second
    thread's lookup is blocked on the registry's lock; released, that lookup sees both names.
    The order is forced by events, not by sleeping."""
    half_way, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def held_loader():
        registry.register("a", 1)
        half_way.set()
        assert release.wait(60), "the test never released the loader"
        registry.register("b", 2)

    registry = Registry("thing", loader=held_loader)
    registry._lock = lock = _ReportingLock()
    first = threading.Thread(target=registry.names)
    first.start()
    assert half_way.wait(60)                  # half filled; the loader holds the lock
    second = threading.Thread(target=lambda: seen.append(registry.names()))
    second.start()
    assert lock.contended.wait(60)            # the second lookup waits for the lock ...
    assert seen == []                         # ... and has returned nothing
    release.set()
    first.join(60)
    second.join(60)
    assert not first.is_alive() and not second.is_alive()
    assert seen == [["a", "b"]]               # the whole registry, never the half-filled one


class _ReportingLock:
    """A re-entrant lock that says when a thread had to wait for it (another thread held it)."""

    def __init__(self):
        self._lock = threading.RLock()
        self.contended = threading.Event()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self.contended.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
