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

from ..files import atomic_write, exception_reason
from .labels import FASHION_MNIST_LABELS

__all__ = ["ImageSet", "load_split", "load_image_folder", "sample_image_folder", "open_image", "FASHION_MNIST_DIR", "ASSETS_DIR",
           "DataMissingError", "SPLIT_SEED", "HOLDOUT_SIZE", "MAX_IMAGE_PIXELS", "MAX_FOLDER_IMAGES",
           "MAX_FOLDER_ENTRIES", "MAX_FOLDER_BYTES", "MAX_IMAGE_SIZE"]

# Limits on a user's ImageFolder (docs/limits.md). Pixels are checked from the header, before
# decoding: a 20000x20000 PNG (a decompression bomb) is refused without being decoded.
MAX_IMAGE_PIXELS = 25_000_000          # one image: 5000 x 5000
MAX_FOLDER_IMAGES = 200_000            # images in one folder (Fashion-MNIST has 70k)
MAX_FOLDER_ENTRIES = 1_000_000         # files and folders visited while walking it
MAX_FOLDER_BYTES = 4 << 30             # decoded uint8 arrays: images x size^2 x channels
MAX_IMAGE_SIZE = 1024                  # the stored size images are resized to

# The image files ImageFolder reads (torchvision's IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

FASHION_MNIST_DIR = Path(os.environ.get("OFA_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
SPLIT_SEED = 0          # the fixed split of the 60k training images
HOLDOUT_SIZE = 5000     # held out from training: accuracy-predictor data
# The images of the bundled tiny-fmnist package (assets/supernets/tiny-fmnist/manifest.json).
BUNDLED = {"calib": ASSETS_DIR / "supernets" / "tiny-fmnist" / "calibration.npz",
           "test2k": ASSETS_DIR / "supernets" / "tiny-fmnist" / "evaluation.npz"}

_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class DataMissingError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, H, W) or (N, C, H, W) with int64 labels (N,) and class names. (Where
    `export_onnx` takes an ImageSet, its images may also be the model's input already
    preprocessed: float32 (N, C, S, S).)"""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def as_dataset(self, transform=None):
        """A torchvision dataset view (item: uint8 C x H x W tensor, label); torch and
        torchvision are imported only here, so that reading images needs numpy alone."""
        from .torch_view import ArrayDataset
        return ArrayDataset(self, transform)


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
    # The walk (bounded, loop-safe) before torchvision loads: an empty or hostile folder is
    # refused at once. ImageFolder then walks the same way (BoundedImageFolder).
    root = Path(root)
    _checked_walk(root, image_size, channels)
    from torchvision.datasets import ImageFolder

    class BoundedImageFolder(ImageFolder):
        # torchvision walks with followlinks=True and no loop check: a symlink to a parent hangs it.
        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            return _walk_images(Path(directory), class_to_idx, extensions, image_size, channels)

    try:
        folder = BoundedImageFolder(str(root), loader=open_image, transform=_transform(image_size, channels))
    except FileNotFoundError as exc:  # torchvision: no class folder, or no image in them
        raise DataMissingError(f"image folder {root} holds no images ({exc}); expected one "
                               f"sub-folder per class") from None
    if len(folder) == 0:
        raise DataMissingError(f"image folder {root} holds no images")
    images = np.stack([folder[i][0].numpy() for i in range(len(folder))])
    if channels == 1:
        images = images[:, 0]
    return ImageSet(images, np.asarray(folder.targets, np.int64), tuple(folder.classes))


def sample_image_folder(root: str | Path, image_size: int, channels: int, n_first: int, n_second: int,
                        seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Two disjoint, class-stratified, seeded picks of `n_first` and `n_second` images of an
    ImageFolder (`datasets.sampling.stratified_split`), decoded as `load_image_folder` decodes
    them. Only the picked files are decoded, so a folder far larger than memory (ImageNet's
    50k validation images) can be sampled; the walk is bounded as for `load_image_folder`."""
    from .sampling import stratified_split
    classes, samples = _checked_walk(Path(root), image_size, channels)
    targets = np.array([target for _, target in samples], np.int64)
    first, second = stratified_split(targets, n_first, n_second, seed)
    transform = _transform(image_size, channels)

    def decode(index: np.ndarray) -> ImageSet:
        images = np.stack([transform(open_image(samples[i][0])).numpy() for i in index])
        return ImageSet(images[:, 0] if channels == 1 else images, targets[index], tuple(classes))

    return decode(first), decode(second)


def _checked_walk(root: Path, image_size: int, channels: int) -> tuple[list[str], list[tuple[str, int]]]:
    """The class names and the bounded walk of an ImageFolder, with the arguments checked; an
    absent or empty folder is a `DataMissingError`."""
    if not root.is_dir():
        raise DataMissingError(f"image folder {root} does not exist; expected one sub-folder per class")
    for name, value, high in (("image_size", image_size, MAX_IMAGE_SIZE), ("channels", channels, 3)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= high:
            raise ValueError(f"{name} = {value!r}; allowed: an integer 1..{high}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    try:
        samples = _walk_images(root, {c: i for i, c in enumerate(classes)}, IMAGE_EXTENSIONS, image_size, channels)
    except FileNotFoundError as exc:
        raise DataMissingError(f"image folder {root} holds no images ({exc}); expected one "
                               f"sub-folder per class") from None
    return classes, samples


def _transform(image_size: int, channels: int):
    """PIL image -> uint8 tensor (channels, image_size, image_size), as both readers decode."""
    from torchvision import transforms
    convert = [transforms.Grayscale(1)] if channels == 1 else [transforms.Lambda(lambda im: im.convert("RGB"))]
    return transforms.Compose(convert + [transforms.Resize((image_size, image_size)), transforms.PILToTensor()])


def _walk_images(root: Path, class_to_idx: dict[str, int], extensions, image_size: int, channels: int
                 ) -> list[tuple[str, int]]:
    """(path, class) of every image under each class folder, sorted as torchvision sorts them;
    symlinks are followed, but a folder already visited (a loop) is skipped; the walk and the
    image count are capped (MAX_FOLDER_ENTRIES, MAX_FOLDER_IMAGES, MAX_FOLDER_BYTES)."""
    extensions = tuple(e.lower() for e in (extensions or ()))
    per_image = image_size * image_size * channels
    max_images = min(MAX_FOLDER_IMAGES, MAX_FOLDER_BYTES // per_image)
    samples: list[tuple[str, int]] = []
    entries = found = 0
    seen: set[tuple[int, int]] = set()
    real_root = Path(os.path.realpath(root))
    for name in sorted(class_to_idx):
        target = root / name
        if not target.is_dir():
            continue
        walked = []
        # Not sorted(os.walk(...)) as torchvision does: that runs the whole walk before a loop
        # can be pruned. The visited folders are sorted afterwards, giving torchvision's order.
        for directory, dirs, files in os.walk(target, followlinks=True):
            stat = os.stat(directory)
            real = Path(os.path.realpath(directory))
            # Reached again through a symlink, or a link up to the folder itself or above: a loop.
            if (stat.st_dev, stat.st_ino) in seen or real == real_root or real in real_root.parents:
                dirs[:] = []
                continue
            seen.add((stat.st_dev, stat.st_ino))
            entries += len(dirs) + len(files)
            if entries > MAX_FOLDER_ENTRIES:
                raise ValueError(f"image folder {root} has more than {MAX_FOLDER_ENTRIES:,} files and "
                                 f"folders; allowed: at most {MAX_FOLDER_ENTRIES:,} (MAX_FOLDER_ENTRIES)")
            images = [f for f in files if f.lower().endswith(extensions)]
            walked.append((directory, images))
            found += len(images)
            if found > max_images:
                raise ValueError(
                    f"image folder {root} has more than {max_images:,} images at size {image_size} x "
                    f"{channels} channel(s); allowed: at most {MAX_FOLDER_IMAGES:,} images "
                    f"(MAX_FOLDER_IMAGES) and {MAX_FOLDER_BYTES:,} decoded bytes (MAX_FOLDER_BYTES)")
        for directory, files in sorted(walked):
            samples += [(os.path.join(directory, file), class_to_idx[name]) for file in sorted(files)]
    if not samples:
        raise FileNotFoundError(f"no image with an extension {', '.join(extensions)} in the class folders")
    return samples


def open_image(path: str | os.PathLike):
    """An RGB PIL image of a user's file (as torchvision's default loader gives it), or
    `ValueError` naming the file: one that is not an image, or larger than MAX_IMAGE_PIXELS
    (checked from the header, before anything is decoded)."""
    import warnings

    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"image '{path}' is {width} x {height} pixels; allowed: at most "
                                     f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS)")
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image '{path}' has more pixels than allowed ({MAX_IMAGE_PIXELS:,}, "
                         f"MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:   # PIL's decoders raise these
        raise ValueError(f"image '{path}' cannot be read as an image ({type(exc).__name__}: "
                         f"{exception_reason(exc)})") from None


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


def decode_image_bytes(data: bytes, name: str = "image", channels: int = 1,
                       max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A user's PNG or JPEG file content as a uint8 array, (H, W) for `channels` 1 (grayscale)
    or (H, W, 3), ready for `runtime.preprocess`. `ValueError` naming `name`: not PNG / JPEG,
    a damaged file, or more than `max_pixels` pixels (checked from the header, before anything
    is decoded; a JPEG is decoded at a reduced scale when that is enough)."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError
    if channels not in (1, 3):
        raise ValueError(f"channels = {channels!r}; allowed: 1 or 3")
    limit = min(int(max_pixels), MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as probe:
                probe.verify()                      # structure and checksums, without decoding
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
                width, height = im.size
                if width * height > limit:
                    raise ValueError(f"image '{name}' is {width} x {height} pixels; allowed: at most "
                                     f"{limit:,} pixels")
                mode = "L" if channels == 1 else "RGB"
                if im.format == "JPEG":
                    im.draft(mode, (min(width, MAX_IMAGE_SIZE), min(height, MAX_IMAGE_SIZE)))
                decoded = im.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image '{name}' has more pixels than allowed ({limit:,})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:   # PIL's decoders raise these
        raise ValueError(f"image '{name}' cannot be read as a PNG or JPEG image ({type(exc).__name__}: "
                         f"{exception_reason(exc)})") from None
    return np.asarray(decoded, dtype=np.uint8).copy()
