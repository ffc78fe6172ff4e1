"""ofa_engine.datasets.images: the fixed Fashion-MNIST split, IDX reading, missing-data errors, ImageFolder."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ofa_engine.datasets.images as D
from ofa_engine.datasets.images import DataMissingError, ImageSet, load_image_folder, load_split, split_indices
from ofa_engine.families.mbv3.space import FASHION_MNIST_LABELS

DEBIAN_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file of unsigned bytes, gzip-compressed, as the Fashion-MNIST files are."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())
    return path


# ---------------------------------------------------------------------- the split
def test_split_indices_is_fixed_disjoint_and_complete():
    train, holdout = split_indices()
    again = split_indices()
    assert np.array_equal(train, again[0]) and np.array_equal(holdout, again[1])
    assert len(train) == 55000 and len(holdout) == 5000
    assert not np.intersect1d(train, holdout).size
    assert np.array_equal(np.sort(np.concatenate([train, holdout])), np.arange(60000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(holdout) > 0)   # sorted
    other_train, other_holdout = split_indices(seed=1)
    assert not np.array_equal(holdout, other_holdout)
    small_train, small_holdout = split_indices(100, 10)
    assert len(small_train) == 90 and len(small_holdout) == 10


# ---------------------------------------------------------------------- IDX files and splits
def test_read_idx_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    got = D._read_idx(write_idx(tmp_path / "images.gz", images))
    assert got.dtype == np.uint8 and got.shape == (7, 5, 3) and np.array_equal(got, images)
    assert np.array_equal(D._read_idx(write_idx(tmp_path / "labels.gz", labels)), labels)


def test_read_idx_rejects_other_data_types(tmp_path):
    path = tmp_path / "floats.gz"
    with gzip.open(path, "wb") as fh:  # 0x0D = float32
        fh.write((0x0D01).to_bytes(4, "big") + (2).to_bytes(4, "big") + np.zeros(2, np.float32).tobytes())
    with pytest.raises(ValueError, match="floats.gz is not an IDX file of unsigned bytes"):
        D._read_idx(path)


@pytest.mark.parametrize("split", ["train", "holdout", "test"])
def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch, split):
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(DataMissingError) as info:
        load_split(split)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message and "OFA_FMNIST_DIR" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_split_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown split 'validation'") as info:
        load_split("validation")
    for name in ("train", "holdout", "test", "calib", "test2k"):
        assert name in str(info.value)


def test_train_and_holdout_come_from_the_fixed_split(tmp_path, monkeypatch):
    """A fake package folder of 6000 tiny images: the split is split_indices(6000)."""
    n = 6000
    index = np.arange(n)
    images = np.stack([index % 256, index // 256, np.full(n, 7), np.zeros(n)], 1).reshape(n, 2, 2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", index % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:30])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", index[:30] % 10)
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", tmp_path)
    train, holdout, test = load_split("train"), load_split("holdout"), load_split("test")
    assert (len(train), len(holdout), len(test)) == (1000, 5000, 30)
    train_idx, holdout_idx = split_indices(n)
    for data, idx in ((train, train_idx), (holdout, holdout_idx)):
        assert data.images.dtype == np.uint8 and data.images.shape[1:] == (2, 2)
        assert data.labels.dtype == np.int64
        decoded = data.images[:, 0, 0].astype(np.int64) + 256 * data.images[:, 0, 1].astype(np.int64)
        assert np.array_equal(decoded, idx)
        assert np.array_equal(data.labels, idx % 10)
        assert data.classes == FASHION_MNIST_LABELS
    assert train.images.flags.writeable   # a copy, not a view of the read-only buffer


@pytest.mark.parametrize("name", ["calib", "test2k"])
def test_bundled_subsets(name):
    # Committed files (assets/supernets/tiny-fmnist/): a missing one is an error, not a skip.
    assert D.BUNDLED[name].is_file(), f"{D.BUNDLED[name]} is missing (committed; python -m ofa_engine make-subsets)"
    data = load_split(name)
    assert data.images.shape == (2000, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and set(np.unique(data.labels)) <= set(range(10))
    assert len(data.classes) == 10


def test_missing_bundled_subset(tmp_path, monkeypatch):
    monkeypatch.setitem(D.BUNDLED, "calib", tmp_path / "nope.npz")
    with pytest.raises(DataMissingError, match="make-subsets"):
        load_split("calib")


@pytest.mark.skipif(not DEBIAN_TRAIN.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_package_train_and_holdout(monkeypatch):
    # 60k images: read them once for both splits.
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", DEBIAN_TRAIN.parent)
    monkeypatch.setattr(D, "_fashion_mnist", functools.lru_cache(None)(D._fashion_mnist))
    train, holdout = load_split("train"), load_split("holdout")
    assert train.images.shape == (55000, 28, 28) and holdout.images.shape == (5000, 28, 28)
    assert train.images.dtype == holdout.images.dtype == np.uint8
    assert len(train.labels) == 55000 and len(holdout.labels) == 5000
    assert np.array_equal(np.bincount(train.labels, minlength=10) + np.bincount(holdout.labels, minlength=10),
                          np.full(10, 6000))


# ---------------------------------------------------------------------- ImageFolder
@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, count in (("cat", 2), ("ant", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(root / cls / f"{i}.png")
    return root


def test_load_image_folder_grayscale(image_folder):
    data = load_image_folder(image_folder, 8)
    assert isinstance(data, ImageSet)
    assert data.images.shape == (5, 8, 8) and data.images.dtype == np.uint8
    assert data.classes == ("ant", "cat")               # sorted folder names
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.images.std() > 0


def test_load_image_folder_rgb_matches_pil(image_folder):
    data = load_image_folder(image_folder, 10, channels=3)
    assert data.images.shape == (5, 3, 10, 10) and data.images.dtype == np.uint8
    # the first 'ant' image is 10x12: resizing to 10x10 from PIL gives the same pixels
    with Image.open(image_folder / "ant" / "0.png") as im:
        expected = np.asarray(im.convert("RGB").resize((10, 10), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(data.images[0].astype(int) - expected.astype(int)).max() <= 1
    item, label = data.as_dataset()[4]
    assert isinstance(item, torch.Tensor) and item.shape == (3, 10, 10) and label == 1


def test_load_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataMissingError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataMissingError):
        load_image_folder(tmp_path / "empty", 8)
    (tmp_path / "no_images" / "cls").mkdir(parents=True)
    (tmp_path / "no_images" / "cls" / "notes.txt").write_text("not an image")
    with pytest.raises(DataMissingError):
        load_image_folder(tmp_path / "no_images", 8)


def test_array_dataset_items():
    data = ImageSet(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), np.array([4, 7]), tuple("abcdefghij"))
    ds = data.as_dataset()
    image, label = ds[1]
    assert len(ds) == 2 and image.shape == (1, 3, 3) and image.dtype == torch.uint8 and label == 7
    assert len(data.subset(np.array([1]))) == 1


def test_make_bundled_subsets_writes_atomically(tmp_path, monkeypatch):
    """The subsets are written through ofa_engine.files: a failed write leaves the old file."""
    data = ImageSet(np.zeros((40, 28, 28), np.uint8), np.arange(40) % 10, ())
    monkeypatch.setattr(D, "load_split", lambda name: data)
    monkeypatch.setattr(D, "BUNDLED", {"calib": tmp_path / "calib.npz", "test2k": tmp_path / "test2k.npz"})
    paths = D.make_bundled_subsets(size=10)
    with np.load(paths["calib"]) as f:
        assert f["images"].shape == (10, 28, 28) and f["labels"].dtype == np.uint8
    before = paths["calib"].read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        D.make_bundled_subsets(size=10)
    assert paths["calib"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "test2k.npz"]


def test_decode_image_bytes_reads_png_and_jpeg_and_refuses_the_rest():
    """An uploaded image: PNG / JPEG to uint8 grayscale or RGB; a non-image, a damaged file, a
    GIF and an image over the pixel cap (refused from its header) each name the file."""
    import io

    from PIL import Image
    from ofa_engine.datasets.images import decode_image_bytes

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    gray = decode_image_bytes(png.getvalue(), "shirt.png")
    assert gray.shape == (30, 40) and gray.dtype == np.uint8
    assert np.array_equal(gray, np.asarray(Image.fromarray(rgb).convert("L")))
    assert np.array_equal(decode_image_bytes(png.getvalue(), "shirt.png", channels=3), rgb)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG")
    assert decode_image_bytes(jpeg.getvalue(), "shirt.jpg").shape == (30, 40)

    big = io.BytesIO()
    Image.new("L", (300, 200)).save(big, format="PNG")
    with pytest.raises(ValueError, match=r"'big.png' is 300 x 200 pixels; allowed: at most 50,000"):
        decode_image_bytes(big.getvalue(), "big.png", max_pixels=50_000)
    gif = io.BytesIO()
    Image.fromarray(rgb).save(gif, format="GIF")
    for data, name in ((b"not an image", "x.png"), (png.getvalue()[:60], "cut.png"), (gif.getvalue(), "a.gif")):
        with pytest.raises(ValueError, match=f"'{name}' cannot be read as a PNG or JPEG"):
            decode_image_bytes(data, name)
    with pytest.raises(ValueError, match="channels"):
        decode_image_bytes(png.getvalue(), channels=2)
