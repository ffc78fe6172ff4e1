"""The one progress-callback signature of the engine.

A long job (training, dataset builds, measuring, the kit, `specialize`) takes an optional
`progress: Progress` and calls `progress(done, total, message)`: `done` of `total` units of
work are finished, `message` says what was just done, for a person to read. Callers turn it
into a progress bar (`done / total`) or a log line.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["Progress", "report"]

Progress = Callable[[int, int, str], None]


def report(progress: Optional[Progress], done: int, total: int, message: str = "") -> None:
    """Call `progress` if there is one."""
    if progress is not None:
        progress(int(done), int(total), message)
