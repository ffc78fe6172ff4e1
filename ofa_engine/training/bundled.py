"""The bundled, trained supernet and the one way to get a deployable subnet out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..datasets.images import ASSETS_DIR, ImageSet, load_split
from ..runtime.evaluation import calibrate_bn
from ..files import resolve_name_or_path
from .checkpoint import load_supernet_file

__all__ = ["load_supernet", "extract_calibrated", "BUNDLED_SUPERNETS"]

# The weights of the bundled package (assets/supernets/tiny-fmnist/manifest.json).
BUNDLED_SUPERNETS = {"tiny-fmnist": ASSETS_DIR / "supernets" / "tiny-fmnist" / "supernet.pt"}


def load_supernet(name_or_path: str | Path) -> Any:
    """A trained supernet: a bundled name ('tiny-fmnist') or a file written by training
    (`save_supernet`). Loading never executes code (weights_only)."""
    return load_supernet_file(resolve_name_or_path(name_or_path, BUNDLED_SUPERNETS, "supernet"))


def extract_calibrated(supernet: Any, cfg: Any, calib: ImageSet | None = None) -> Any:
    """Extract `cfg` and recalibrate its BN statistics (2,000 training images by default,
    the bundled subset), as OFA does before evaluating or deploying a subnet. `supernet`: any
    family's; the result is its extracted module of standard layers."""
    cfg = supernet.space.validate(cfg)
    calib = calib if calib is not None else load_split("calib")
    net = supernet.extract(cfg)
    return calibrate_bn(net, calib.images, supernet.space)
