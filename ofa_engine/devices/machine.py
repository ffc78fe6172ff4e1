"""The machine this code runs on, in words: its CPU model and a one-line description. Read
from /proc and `platform` only (no onnxruntime, no torch): the app's first page shows it."""

from __future__ import annotations

import os
import platform

__all__ = ["cpu_model", "this_machine"]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere). The benchmark
    scripts print it too."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def this_machine() -> str:
    """A short description of the machine running this code (CPU model, cores, OS)."""
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"
