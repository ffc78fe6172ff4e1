"""The family interface is the only way in: outside a `families/` folder, no module of the engine
or the app imports a family's own modules, and every registered family keeps the contract that
the pipeline, the predictors and the app rely on (issue 35)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from ofa_engine.families import FAMILIES, family_named, family_of
from ofa_engine.space.family import DESCRIBE_FIELDS, NetworkFamily
from ofa_engine.space.interface import ANALYTIC_METRICS

ROOT = Path(__file__).resolve().parents[1]


def _family_packages() -> set[str]:
    return {p.name for p in (ROOT / "ofa_engine" / "families").iterdir()
            if p.is_dir() and (p / "__init__.py").exists()}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # `from ofa_engine.families import mbv3` imports the family package too
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def boundary_violations() -> list[str]:
    families = _family_packages()
    found = []
    for top in ("ofa_engine", "app"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "families" in rel.parts[:-1]:
                continue
            for line, module in _imported_modules(path):
                parts = module.split(".")
                if parts[:2] == ["ofa_engine", "families"] and len(parts) > 2 and parts[2] in families:
                    found.append(f"{rel}:{line} imports {module}")
    return sorted(set(found))


def test_no_module_outside_families_imports_a_family():
    assert boundary_violations() == []


def test_the_scan_sees_relative_absolute_and_nested_imports(tmp_path):
    # The scanner itself must catch each spelling, or the test above could not fail.
    sample = ROOT / "ofa_engine" / "runtime" / "_boundary_probe.py"
    sample.write_text("from ..families.mbv3.space import SearchSpace\n"
                      "def f():\n    import ofa_engine.families.mbv3.static\n"
                      "from ofa_engine.families import mbv3\n"
                      "from ofa_engine.families import family_of\n", encoding="utf-8")
    try:
        lines = sorted({v.split(" imports ")[0] for v in boundary_violations() if "_boundary_probe" in v})
    finally:
        sample.unlink()
    assert lines == [f"{sample.relative_to(ROOT)}:{n}" for n in (1, 3, 4)]


def test_at_least_two_families_are_registered():
    assert len(FAMILIES.names()) >= 2, FAMILIES.names()


@pytest.fixture(params=sorted(n for n in FAMILIES.names()), scope="module")
def family(request):
    cls = family_named(request.param)
    return family_of(cls.preset_names()[0])


def test_registered_family_keeps_the_contract(family):
    import torch
    assert isinstance(family, NetworkFamily) and family.family in FAMILIES.names()
    space = family.space
    assert family_of(space).family == family.family
    assert family_named(family.family).space_from_dict(family.space_to_dict()).to_dict() == space.to_dict()
    supernet = family.build_supernet()
    assert family.supernet_problems(supernet.state_dict()) == []
    rng = np.random.default_rng(0)
    configs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(3)]
    for cfg in configs:
        net = supernet.extract(cfg).eval()
        counted = family.count_macs(net, cfg)
        analytic = family.analyze(cfg)
        assert set(ANALYTIC_METRICS) <= set(analytic)
        assert counted == analytic["macs"]
        assert sum(p.numel() for p in net.parameters()) == analytic["params"] > 0
        rows = family.describe(cfg)
        assert rows and all(tuple(r) == DESCRIBE_FIELDS for r in rows)
        active = [r for r in rows if r["active"]]
        assert sum(r["macs"] for r in active) == analytic["macs"]
        with torch.no_grad():
            out = net(torch.zeros(2, *family.input_shape(cfg)))
        assert tuple(out.shape) == (2, space.num_classes)
        assert family.encode([cfg]).shape == (1, family.encoding_size)
    genes = family.to_genes(configs)
    assert [family.config_to_dict(c) for c in family.to_configs(genes)] == [family.config_to_dict(family.validate(c))
                                                                            for c in configs]
