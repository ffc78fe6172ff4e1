"""The command line (`python -m ofa_engine`): a leaf, imported by nothing in the engine."""

from .main import main

__all__ = ["main"]
