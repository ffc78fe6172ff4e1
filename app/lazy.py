"""Modules imported on first use: `alt = lazy_module("altair")`.

altair and pandas (with pyarrow) take about 2 s to import here; the home page's first run draws
no chart and no table, so the modules that only draw them import them when they first do.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    """Stands for a module; the first attribute read imports it (once: Python caches imports)."""

    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    return _LazyModule(name)
