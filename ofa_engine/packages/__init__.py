"""Supernet packages: one folder (or .zip) with a supernet's weights, labels, preprocessing,
calibration and evaluation images, optional accuracy predictor and latency profiles, and its
provenance (docs/packages.md). `load_package` resolves a bundled name, a folder or a zip."""

from .manifest import MANIFEST_NAME, PACKAGE_FORMAT, PACKAGE_VERSION, Manifest, PackageError
from .package import (ENV_VAR, PackageEntry, SupernetPackage, bundled_packages, clear_package_cache, list_packages,
                      load_package, load_weights, packages_dir_from_env)

__all__ = ["MANIFEST_NAME", "PACKAGE_FORMAT", "PACKAGE_VERSION", "Manifest", "PackageError", "ENV_VAR",
           "PackageEntry", "SupernetPackage", "bundled_packages", "clear_package_cache", "list_packages",
           "load_package", "load_weights", "packages_dir_from_env"]
