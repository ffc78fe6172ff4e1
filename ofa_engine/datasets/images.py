"""Image data as uint8 arrays: Fashion-MNIST from Debian's package, the bundled subsets, or a
user's own ImageFolder.

Everything the trainer needs fits in memory (55k x 28 x 28 bytes = 43 MB), so batches are
cut from arrays and augmented as tensors: far faster on 2 cores than per-image PIL transforms.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import VisionDataset

from ..files import atomic_write

__all__ = ["ImageSet", "load_split", "load_image_folder", "FASHION_MNIST_DIR", "ASSETS_DIR",
           "DataMissingError", "SPLIT_SEED", "HOLDOUT_SIZE"]

FASHION_MNIST_DIR = Path(os.environ.get("OFA_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
SPLIT_SEED = 0          # the fixed split of the 60k training images
HOLDOUT_SIZE = 5000     # held out from training: accuracy-predictor data
BUNDLED = {"calib": ASSETS_DIR / "data" / "fmnist-calib-2k.npz",
           "test2k": ASSETS_DIR / "data" / "fmnist-test-2k.npz"}

_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class DataMissingError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, H, W) or (N, C, H, W) with int64 labels (N,) and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def as_dataset(self) -> "ArrayDataset":
        return ArrayDataset(self)


class ArrayDataset(VisionDataset):
    """torchvision view of an `ImageSet` (item: uint8 CxHxW tensor, label)."""

    def __init__(self, data: ImageSet, transform=None):
        super().__init__(root=None, transform=transform)
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = torch.from_numpy(self.data.images[i])
        image = image.unsqueeze(0) if image.dim() == 2 else image
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[i])


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(part: str) -> ImageSet:
    from ..families.mbv3.space import FASHION_MNIST_LABELS
    image_file, label_file = (FASHION_MNIST_DIR / f for f in _FILES[part])
    if not image_file.exists() or not label_file.exists():
        raise DataMissingError(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIR} (missing {image_file.name}). Install "
            f"Debian's package: `apt-get install dataset-fashion-mnist`, or set OFA_FMNIST_DIR to a "
            f"folder holding the four *-ubyte.gz files. The bundled subsets 'calib' and 'test2k' "
            f"need no download.")
    return ImageSet(_read_idx(image_file).copy(), _read_idx(label_file).astype(np.int64),
                    FASHION_MNIST_LABELS)


def split_indices(n: int = 60000, holdout: int = HOLDOUT_SIZE, seed: int = SPLIT_SEED):
    """The fixed (train, holdout) index split of the 60k Fashion-MNIST training images."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[holdout:]), np.sort(order[:holdout])


def load_split(name: str) -> ImageSet:
    """'train' (55k), 'holdout' (5k), 'test' (10k) from the Debian package, or the bundled
    'calib' (2k training images, for BN recalibration) and 'test2k' (2k test images)."""
    if name in BUNDLED:
        path = BUNDLED[name]
        if not path.exists():
            raise DataMissingError(f"bundled subset {path} is missing: re-create it with "
                                   f"`python -m ofa_engine make-subsets`")
        with np.load(path, allow_pickle=False) as f:
            from ..families.mbv3.space import FASHION_MNIST_LABELS
            return ImageSet(f["images"], f["labels"].astype(np.int64), FASHION_MNIST_LABELS)
    if name == "test":
        return _fashion_mnist("test")
    if name in ("train", "holdout"):
        full = _fashion_mnist("train")
        train_idx, holdout_idx = split_indices(len(full))
        return full.subset(train_idx if name == "train" else holdout_idx)
    raise ValueError(f"unknown split '{name}'; allowed: train, holdout, test, calib, test2k")


def load_image_folder(root: str | Path, image_size: int, channels: int = 1) -> ImageSet:
    """A user's own data: torchvision ImageFolder (one sub-folder per class), decoded once to
    uint8 arrays of `image_size` x `image_size` with `channels` channels."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise DataMissingError(f"image folder {root} does not exist; expected one sub-folder per class")
    convert = [transforms.Grayscale(1)] if channels == 1 else [transforms.Lambda(lambda im: im.convert("RGB"))]
    try:
        folder = ImageFolder(str(root), transform=transforms.Compose(
            convert + [transforms.Resize((image_size, image_size)), transforms.PILToTensor()]))
    except FileNotFoundError as exc:  # torchvision: no class folder, or no image in them
        raise DataMissingError(f"image folder {root} holds no images ({exc}); expected one "
                               f"sub-folder per class") from None
    if len(folder) == 0:
        raise DataMissingError(f"image folder {root} holds no images")
    images = np.stack([folder[i][0].numpy() for i in range(len(folder))])
    if channels == 1:
        images = images[:, 0]
    return ImageSet(images, np.asarray(folder.targets, np.int64), tuple(folder.classes))


def make_bundled_subsets(size: int = 2000, seed: int = 1) -> dict[str, Path]:
    """Write the compact bundled subsets (uint8, compressed) from the Debian package."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, source in (("calib", "train"), ("test2k", "test")):
        data = load_split(source)
        index = np.sort(rng.choice(len(data), size, replace=False))
        path = BUNDLED[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez_compressed(fh, images=data.images[index],
                                                          labels=data.labels[index].astype(np.uint8)))
        out[name] = path
    return out
