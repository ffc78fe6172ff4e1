"""ofa_engine: train an OFA supernet once, specialise it for any device in seconds."""

from .space import SearchSpace, SubnetConfig, list_presets
from .supernet import Supernet, build_supernet

__all__ = ["SearchSpace", "SubnetConfig", "Supernet", "build_supernet", "list_presets"]
