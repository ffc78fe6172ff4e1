"""ofa_engine: train an OFA supernet once, specialise it for any device in seconds.

Layers, each importing only the ones above it in this list (tests/test_layers.py checks it):

- `registry`, `files`: one registry pattern; atomic writes and bounded reading of user files;
- `space/`: the family-agnostic search-space interface and the categorical genome;
- `families/mbv3/`: everything MobileNetV3-specific (space, layout, analytics, supernet, ...);
- `datasets/`: images and labels;
- `runtime/`: ONNX export and verify, ONNX Runtime sessions and timing, BN recalibration,
  preprocessing;
- `predictors/`: accuracy and latency predictors and their metrics;
- `devices/`: device profiles, the MCU catalogue, the profile kit, rescaling;
- `training/`: progressive shrinking, supernet files, the accuracy dataset;
- `packages/`: supernet packages (weights, labels, images, predictor, provenance) and their loader;
- `search/`: constraints, the evaluator, the strategies;
- `pipeline/`: `specialize`, search to a verified ONNX file;
- `cli/`: the command line, a leaf that nothing imports.
- `lessons/`: the notes' building blocks, apart from the OFA pipeline.

Not `search`: that name is the subpackage, which the import system sets as this package's
attribute once it is imported (use `from ofa_engine.search import search`).

Public names are loaded lazily, so `import ofa_engine` stays cheap (no torch, ONNX, trainer or
CLI until a name that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "SearchSpace": "families.mbv3.space", "SubnetConfig": "families.mbv3.space",
    "list_presets": "families.mbv3.space",
    "analyze": "families.mbv3.analytics",
    "deployment_bytes": "families.mbv3.analytics",
    "Supernet": "families.mbv3.supernet", "build_supernet": "families.mbv3.supernet",
    "import_official_ofa": "families.mbv3.official",
    "export_onnx": "runtime.export",
    "calibrate_bn": "runtime.evaluation",
    "extract_calibrated": "training.bundled", "load_supernet": "training.bundled",
    "load_profile": "devices.profiles", "list_profiles": "devices.profiles",
    "load_accuracy_predictor": "predictors.accuracy",
    "load_package": "packages.package", "list_packages": "packages.package",
    "Constraints": "search.constraints", "InfeasibleBudgetError": "search.constraints",
    "Evaluator": "search.evaluator",
    "specialize": "pipeline.specialize", "Specialization": "pipeline.specialize",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'ofa_engine' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
