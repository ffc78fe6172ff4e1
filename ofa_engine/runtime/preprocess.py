"""The one place that turns raw uint8 images into network input.

Training, evaluation, BN recalibration, the app and the ONNX metadata all go through here, so
a third party who follows `preprocessing_spec` builds exactly the input our numbers came from.
A space of any family serves, as long as it has `in_channels`, `mean` and `std` (`ImageSpace`).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["preprocess", "preprocessing_spec", "ImageSpace"]


class ImageSpace(Protocol):
    """What preprocessing reads of a search space (every family's space object has it)."""

    in_channels: int
    mean: Sequence[float]
    std: Sequence[float]


def preprocessing_spec(space: ImageSpace, image_size: int) -> dict[str, Any]:
    """Everything needed to build the input of a subnet at `image_size` from a raw uint8 image."""
    return {
        "input": "uint8 image, HxW (1 channel) or HxWxC, values 0..255",
        "scale": 1.0 / 255.0,
        "resize": [image_size, image_size],
        "interpolation": "bilinear",
        "align_corners": False,
        "antialias": False,
        "mean": list(space.mean),
        "std": list(space.std),
        "channels": space.in_channels,
        "layout": "NCHW",
        "dtype": "float32",
        "order": "scale to [0,1], resize, then (x - mean) / std per channel",
    }


def preprocess(images: np.ndarray | torch.Tensor, space: ImageSpace, image_size: int) -> torch.Tensor:
    """uint8 images (N,H,W), (N,C,H,W) or (N,H,W,C) -> float32 (N,C,S,S) normalised input."""
    if isinstance(images, torch.Tensor):
        x = images
    else:
        arr = np.asarray(images)
        # torch warns the user (UserWarning) when a tensor would share a read-only array's memory,
        # as the bundled and packaged image sets' are; a copy of uint8 images is cheap (the
        # float conversion below copies them anyway).
        x = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
    if x.dtype != torch.uint8:
        raise ValueError(f"preprocess expects uint8 images, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4 and x.shape[1] != space.in_channels and x.shape[-1] == space.in_channels:
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] != space.in_channels:
        raise ValueError(f"images must be (N,H,W) or (N,{space.in_channels},H,W) uint8, got shape {tuple(x.shape)}")
    x = x.float().mul_(1.0 / 255.0)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(space.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(space.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()
