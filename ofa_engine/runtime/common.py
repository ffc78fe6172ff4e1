"""What the CLI needs of the runtime before torch and ONNX load: the opsets an export allows, and
the runtime's failures that are not the user's fault (raised by modules that need torch/ONNX)."""

from __future__ import annotations

__all__ = ["ExportVerificationError", "MAX_OPSET", "MIN_OPSET", "QuantizationRefusedError"]

MIN_OPSET = 17
# The TorchScript exporter (torch 2.14) writes opsets up to 20; above it torch raises a bare RuntimeError.
MAX_OPSET = 20


class ExportVerificationError(RuntimeError):
    """The exported file does not reproduce the PyTorch model (or onnxruntime cannot run it)."""


class QuantizationRefusedError(RuntimeError):
    """The int8 file disagrees with its float original on too many evaluation images."""
