"""ofa_engine: train an OFA supernet once, specialise it for any device in seconds."""

from .analytics import analyze
from .export import export_onnx
from .official import import_official_ofa
from .space import SearchSpace, SubnetConfig, list_presets
from .supernet import Supernet, build_supernet
from .evaluation import calibrate_bn
from .bundled import extract_calibrated, load_supernet

__all__ = ["SearchSpace", "SubnetConfig", "Supernet", "analyze", "build_supernet", "calibrate_bn",
           "export_onnx", "extract_calibrated", "import_official_ofa", "list_presets", "load_supernet"]
