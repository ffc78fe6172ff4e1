"""One registry pattern for every named thing of the engine (timm's `_registry.py`).

A `Registry` maps names to objects. Modules that define the objects import the registry and
register into it; the registry itself imports nothing of the engine, so a registry never
creates an import cycle. Lookups of an unknown name raise `ValueError` naming what is allowed.

    PRESETS = Registry("search space")
    PRESETS.register("tiny-fmnist", space)
    PRESETS.get("tiny-fmnist")
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind (`what` names the kind in error messages)."""

    def __init__(self, what: str, loader: Callable[[], None] | None = None):
        self.what = what
        self._items: dict[str, T] = {}
        # Called once before the first lookup: imports the modules that fill the registry. Other
        # threads wait until it has run (a lookup never sees a half-filled registry); the lock is
        # re-entrant so that the loader itself may look names up.
        self._loader = loader
        self._lock = threading.RLock()

    def _load(self) -> None:
        if self._loader is None:
            return
        with self._lock:
            if self._loader is not None:
                self._loader()
                self._loader = None

    def register(self, name: str, obj: T | None = None) -> Any:
        """`register(name, obj)`, or `@register(name)` as a decorator."""
        if obj is None:
            def decorate(value: T) -> T:
                self.register(name, value)
                return value
            return decorate
        if name in self._items:
            raise ValueError(f"{self.what} '{name}' is already registered")
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove `name` (and return its object): for plugins and tests that register temporarily."""
        self._load()
        if name not in self._items:
            raise ValueError(f"unknown {self.what} '{name}'")
        return self._items.pop(name)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.what} '{name}'; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
