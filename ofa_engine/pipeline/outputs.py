"""Where `specialize` writes: the model and its report next to it, checked before any work.

Apart from the pipeline (which needs torch and ONNX) so that the CLI refuses a bad `--out` at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files import check_output_path

__all__ = ["output_paths"]


def output_paths(out: str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """(model path, report path) for `out`, or `ValueError` naming `out` as the user gave it."""
    if out is None:
        return None, None
    onnx_path = check_output_path(out, "out")
    report_path = onnx_path.with_suffix(".json")
    if report_path == onnx_path:
        raise ValueError(f"out '{os.fspath(out)}' ends in .json, the name of the report written next "
                         f"to the model: the report would overwrite the model; allowed: a path such "
                         f"as '{onnx_path.with_suffix('.onnx')}'")
    if report_path.is_dir():
        raise ValueError(f"out '{os.fspath(out)}': its report path '{report_path}' is a folder")
    return onnx_path, report_path
