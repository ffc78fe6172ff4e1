"""The package's layering, checked on the source: no import cycle, the CLI a leaf, imports that
point down the layers only, and no module taking another's private names.

Layers, lowest first (ofa_engine/__init__.py says what each holds). A module may import its
own layer and the ones below it; `lessons/` (the notes' building blocks) stands apart from the
OFA pipeline and may use layers up to `runtime/`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ofa_engine"

LAYERS = {
    "registry": 0, "files": 0, "progress": 0, "settings": 0,
    "space": 1,
    "families": 2, "datasets": 2,
    "runtime": 3, "predictors": 3,
    "devices": 4, "training": 4,
    "packages": 4.5,
    "search": 5,
    "pipeline": 6,
    "cli": 7, "__main__": 7,
    "lessons": 3.5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _engine_files() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


MODULES = _engine_files()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Imports(ast.NodeVisitor):
    """Engine modules imported by one file: (target, imported names, at import time?)."""

    def __init__(self, module: str):
        self.module = module
        self.edges: list[tuple[str, list[str], bool]] = []
        self.aliases: dict[str, str] = {}       # local name -> engine module
        self.private_uses: list[str] = []
        self._depth = 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_If(self, node: ast.If) -> None:
        # `if TYPE_CHECKING:` imports are for type checkers only: they never run.
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "ofa_engine":
                self.edges.append((alias.name, [], self._depth == 0))
                if alias.asname:
                    self.aliases[alias.asname] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = _resolve(self.module, node)
        if target.split(".")[0] != "ofa_engine":
            return
        names = [a.name for a in node.names]
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in MODULES:            # `from . import module`
                self.edges.append((sub, [], self._depth == 0))
                self.aliases[alias.asname or alias.name] = sub
                names.remove(alias.name)
        if names or target in MODULES:
            self.edges.append((target, names, self._depth == 0))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (isinstance(node.value, ast.Name) and node.value.id in self.aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            self.private_uses.append(f"{self.aliases[node.value.id]}.{node.attr}")
        self.generic_visit(node)


def _scan(path: Path, module: str) -> _Imports:
    visitor = _Imports(module)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return visitor


SCANS = {name: _scan(path, name) for name, path in MODULES.items()}


def _layer(module: str) -> float | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_engine_folder_has_a_layer():
    tops = {name.split(".")[1] for name in MODULES if "." in name}
    assert tops <= set(LAYERS), f"give these a layer in this test and in ofa_engine/__init__.py: {tops - set(LAYERS)}"


def test_no_import_cycle_at_import_time():
    graph = {name: {t for t, _, eager in scan.edges if eager and t in MODULES and t != name}
             for name, scan in SCANS.items()}
    # Importing `a.b.c` runs the packages `a` and `a.b` first.
    for name in list(graph):
        for target in list(graph[name]):
            parts = target.split(".")
            graph[name] |= {".".join(parts[:i]) for i in range(2, len(parts))} - {name}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package importing its own submodules, which import the package back, is how packages
    # work; any other cycle is a design error.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_the_cli_is_a_leaf():
    offenders = [f"{name} imports {target}" for name, scan in SCANS.items()
                 if _layer(name) != LAYERS["cli"] and name != "ofa_engine.__main__"
                 for target, _, _ in scan.edges if target.startswith("ofa_engine.cli")]
    assert not offenders, offenders


def test_imports_point_down_the_layers():
    offenders = []
    for name, scan in SCANS.items():
        mine = _layer(name)
        if mine is None:       # ofa_engine/__init__.py: lazy public names only
            continue
        for target, _, _ in scan.edges:
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                offenders.append(f"{name} (layer {mine}) imports {target} (layer {theirs})")
    assert not offenders, "\n".join(offenders)


def _private_imports(scan: _Imports, own: str) -> list[str]:
    out = [f"{scan.module}: from {target} import {n}" for target, names, _ in scan.edges
           for n in names if n.startswith("_") and not n.startswith("__") and target != own]
    return out + [f"{scan.module}: {use}" for use in scan.private_uses if not use.startswith(own + ".")]


def test_no_module_takes_another_modules_private_names():
    offenders = [line for name, scan in SCANS.items() for line in _private_imports(scan, name)]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("folder", ["app", "benchmarks"])
def test_app_and_benchmarks_use_only_public_engine_names(folder):
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        offenders += _private_imports(_scan(path, _module_name(path)), own="")
    assert not offenders, "\n".join(offenders)


def test_import_ofa_engine_loads_no_heavy_module():
    code = ("import sys, ofa_engine\n"
            "heavy = ('torch', 'onnx', 'onnxruntime', 'streamlit', 'ofa_engine.training', 'ofa_engine.cli')\n"
            "print(sorted(m for m in sys.modules if m.startswith(heavy)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout



def test_budget_ranges_need_no_torch():
    """The app's first page shows budget ranges (predictor + profile + analytics): numpy only,
    so a cold start does not wait for torch."""
    code = ("import sys\n"
            "from ofa_engine import SearchSpace, Evaluator, load_profile, load_accuracy_predictor\n"
            "from ofa_engine.search.ranges import budget_ranges\n"
            "space = SearchSpace.preset('tiny-fmnist')\n"
            "budget_ranges(Evaluator(space, load_profile('cpu-ort-1t'), load_accuracy_predictor('tiny-fmnist')))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'onnx'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_package_without_its_weights_loads_and_ranks_without_torch():
    """What the app's home page needs from a package (load_package(..., weights=False), the
    pipeline's shared resources, a profile's budget ranges): no torch; its supernet, asked for,
    loads torch and the weights."""
    code = ("import sys\n"
            "from ofa_engine.packages import load_package\n"
            "from ofa_engine.pipeline.resources import load_resources\n"
            "from ofa_engine.devices.profiles import load_profile, profiles_for_space\n"
            "from ofa_engine.search import budget_ranges\n"
            "package = load_package('tiny-fmnist', weights=False)\n"
            "resources = load_resources(package)\n"
            "budget_ranges(resources.evaluator(load_profile('cpu-ort-1t')))\n"
            "profiles_for_space(package)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'onnx'))))\n"
            "resources.supernet\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"], out.stdout


def _public_names() -> list[str]:
    import ofa_engine
    return list(ofa_engine.__all__)


@pytest.mark.parametrize("name", _public_names())
def test_public_name_is_the_object_of_its_module(name):
    """Each public name is the object of that name in the module the package says it comes
    from (a class or a function, not a stand-in)."""
    import importlib

    import ofa_engine
    value = getattr(ofa_engine, name)
    source = importlib.import_module(f"ofa_engine.{ofa_engine._PUBLIC[name]}")
    assert value is getattr(source, name), (name, value)
    assert callable(value) and value.__name__ == name and value.__module__ == source.__name__, name


def test_no_public_name_is_also_a_subpackage():
    """A public name that is also a subpackage (`search` was) means the module or the function
    depending on what was imported first: the import system sets `ofa_engine.<sub>` to the
    submodule once it is imported. Checked in a fresh interpreter after importing every
    subpackage, so each public name is still the object of its module."""
    code = ("import importlib, pkgutil, ofa_engine\n"
            "for sub in pkgutil.iter_modules(ofa_engine.__path__):\n"
            "    if sub.name != '__main__':\n"
            "        importlib.import_module('ofa_engine.' + sub.name)\n"
            "for name, module in ofa_engine._PUBLIC.items():\n"
            "    value = getattr(ofa_engine, name)\n"
            "    assert value is getattr(importlib.import_module('ofa_engine.' + module), name), name\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["ok"], out.stdout + out.stderr


def test_public_names_are_listed_and_an_unknown_name_is_refused():
    import ofa_engine
    assert ofa_engine.__all__ == sorted(set(ofa_engine.__all__)) and set(ofa_engine.__all__) <= set(dir(ofa_engine))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ofa_engine.nope  # noqa: B018
