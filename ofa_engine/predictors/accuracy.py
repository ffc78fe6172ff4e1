"""Accuracy predictor: the OFA-style MLP over the one-hot subnet encoding.

Two layers, scikit-learn style:

- `MLPEnsembleRegressor`: the estimator. Hyper-parameters in `__init__`, `fit(X, y) -> self`
  and `predict(X)` on batches of encoded rows (`space.encode` of any space): an MLP (ReLU
  hidden layers) on the centred, unit-variance targets; `ensemble=K` trains K seeds and
  averages them into one MLP.
- `AccuracyPredictor`: a fitted model bound to its search space, as files hold it:
  `predict(configs)` takes a population or a list of configs, `predict_encoded(X)` the encoding,
  `torch_module()` is the same function as a differentiable `nn.Module` for gradient search,
  `save` writes it. Its function is `accuracy = baseline_bias + target_scale * mlp(x)`: the MLP
  learns the centred, scaled targets (OFA's choice) and `baseline_bias` is their mean.
  Files of versions 1 and 2 also carry a line `baseline_weight` (and, version 2, a quadratic form
  `quadratic_weight`) under the MLP: they load when those are all zero (as in every file
  `fit-accuracy-predictor` wrote) and are refused otherwise (the research baselines that set them
  live in `benchmarks/accuracy_predictor_report.py`).

Files hold no pickles: an `.npz` with the arrays (loaded with `allow_pickle=False`) and a JSON
file beside it with metadata (space, supernet digest, quality, the command that made it).

    python -m ofa_engine fit-accuracy-predictor --supernet PACKAGE   # writes into the package
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..datasets.images import ASSETS_DIR
from ..families import family_of
from ..files import atomic_paths, exception_reason, read_json, resolve_name_or_path
from .metrics import kendall_tau, split_indices as train_test_split  # noqa: F401  (API)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["AccuracyPredictor", "AccuracyPredictorError", "MacsProxy", "MLPEnsembleRegressor", "load_accuracy_predictor",
           "fit_accuracy_predictor", "evaluate_accuracy_predictor", "train_test_split", "kendall_tau",
           "file_digest", "BUNDLED_PREDICTORS", "MAX_WIDTH", "DEFAULT_HIDDEN", "DEFAULT_WEIGHT_DECAY",
           "DEFAULT_ENSEMBLE"]

FORMAT = "ofa-engine/accuracy-predictor"
VERSION = 3                  # 3 dropped the research terms below; versions 1 and 2 still load
READABLE_VERSIONS = (1, 2, 3)
# Arrays of terms under the MLP that versions 1 and 2 stored (the versions that required each)
# and the engine no longer computes: read only to check that they are all zero.
RETIRED_ARRAYS = {"baseline_weight": (1, 2), "quadratic_weight": (2,)}
# The predictor of the bundled package (assets/supernets/tiny-fmnist/manifest.json).
PREDICTORS_DIR = ASSETS_DIR / "supernets" / "tiny-fmnist"
BUNDLED_PREDICTORS = {"tiny-fmnist": PREDICTORS_DIR / "accuracy-predictor.npz"}
_MAX_FILE_BYTES = 64 << 20       # a 3 x 400 MLP is ~1.5 MB; anything this big is not ours
_MAX_LAYERS = 16
MAX_WIDTH = 4096
# The defaults were chosen by cross-validation (benchmarks/accuracy_predictor_report.py); the
# comparison and why a 4-unit bottleneck averaged over 3 seeds: assets/supernets/tiny-fmnist/PREDICTOR.md.
DEFAULT_HIDDEN = (4, 128)
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_ENSEMBLE = 3


class AccuracyPredictorError(ValueError):
    """An accuracy-predictor file that cannot be used; the message names the file and the problem."""


# ---------------------------------------------------------------------- the predictor
@dataclass(eq=False)
class AccuracyPredictor:
    """Predicts top-1 accuracy (fraction 0..1) of subnets of `space`.

    `weights[i]` has shape (in, out); the last layer has out = 1. `baseline_bias` is the mean
    accuracy the MLP's output (times `target_scale`) is added to. `metadata` is the JSON side
    file (may be empty for a predictor that was never saved).
    """

    space: Any   # a family's space object
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    baseline_bias: float
    target_scale: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The family encodes configs (`NetworkFamily.encode`); bound once, predictions are hot.
        self._family = family_of(self.space, fast=False)
        self.weights = [_flush_subnormals(w) for w in self.weights]
        self.biases = [_flush_subnormals(b).reshape(-1) for b in self.biases]
        self.baseline_bias = float(self.baseline_bias)
        self.target_scale = float(self.target_scale)
        _check_shapes(self.space, self.weights, self.biases, "predictor")

    @property
    def quality(self) -> dict[str, Any] | None:
        """Held-out quality: rmse_points, kendall_tau, n_train, n_test (None when unknown)."""
        return self.metadata.get("quality")

    def predict(self, configs: Any) -> np.ndarray:
        """Accuracy fraction of each config (one, a list or a population), (N,) float64."""
        return self.predict_encoded(self._family.encode(configs))

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        """Same as `predict`, from the family's `encode` output (N, encoding_size)."""
        x = _rows(x, self._family.encoding_size)
        return _forward(x, self.weights, self.biases, self.target_scale, self.baseline_bias)

    @classmethod
    def from_estimator(cls, space: Any, estimator: "MLPEnsembleRegressor",
                       metadata: Mapping[str, Any] | None = None) -> "AccuracyPredictor":
        """The fitted `estimator` (on the family's `encode` rows) as a predictor of `space`."""
        estimator._check_fitted()
        return cls(space, weights=list(estimator.weights_), biases=list(estimator.biases_),
                   baseline_bias=estimator.offset_, target_scale=estimator.scale_, metadata=dict(metadata or {}))

    def torch_module(self) -> "nn.Module":
        """A differentiable float32 `nn.Module`: encoding (N, encoding_size) -> (N,) accuracy.
        Its parameters are frozen copies (gradients flow to the input only)."""
        from .accuracy_torch import ScaledMLP
        return ScaledMLP(self.weights, self.biases, self.target_scale, self.baseline_bias)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write `path` (.npz) and its metadata JSON beside it, atomically and as a pair (the
        arrays first, the metadata that describes them last); returns the npz path."""
        npz_path, json_path = _paths(path)
        if metadata is not None:
            self.metadata = dict(metadata)
        arrays = {"format": np.array(FORMAT), "version": np.array(VERSION),
                  "space": np.array(self.space.name), "n_layers": np.array(len(self.weights)),
                  "baseline_bias": np.array(self.baseline_bias, dtype=np.float64),
                  "target_scale": np.array(self.target_scale, dtype=np.float64)}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"weight_{i}"], arrays[f"bias_{i}"] = w, b
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, "space": self.space.name, **self.metadata}
        with atomic_paths(npz_path, json_path) as (tmp_npz, tmp_json):
            with open(tmp_npz, "wb") as fh:
                np.savez(fh, **arrays)
            tmp_json.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return npz_path


def _rows(x: np.ndarray, width: int) -> np.ndarray:
    """Encoded rows as float32 (N, width), or `ValueError` naming the shape."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"encoding must have shape (N, {width}), got {x.shape}")
    return x


def _forward(x: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], scale: float,
             bias: float) -> np.ndarray:
    """`bias + scale * mlp(x)` in float32 numpy, as float64 (N,)."""
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        h = h @ w
        h += b
        np.maximum(h, 0.0, out=h)
    out = (h @ weights[-1])[:, 0] + biases[-1][0]
    out *= scale
    out += bias
    return out.astype(np.float64)


def _flush_subnormals(array) -> np.ndarray:
    """float32, C-contiguous, with subnormal values set to 0. Weight decay leaves weights of
    ~1e-39, and a matmul over subnormals runs ~10-40x slower on x86 (measured: 10k predictions
    84 ms with them, 5 ms without); their effect on the output is below float32 resolution."""
    out = np.array(array, dtype=np.float32, order="C")
    out[np.abs(out) < np.finfo(np.float32).tiny] = 0.0
    return out


def _check_shapes(space: Any, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], where: str) -> None:
    if not 1 <= len(weights) <= _MAX_LAYERS or len(weights) != len(biases):
        raise AccuracyPredictorError(f"{where}: needs 1..{_MAX_LAYERS} layers with one bias each, "
                                     f"got {len(weights)} weights and {len(biases)} biases")
    width = family_of(space, fast=False).encoding_size
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or w.shape[0] != width or not 1 <= w.shape[1] <= MAX_WIDTH:
            raise AccuracyPredictorError(f"{where}: weight_{i} has shape {w.shape}; expected ({width}, 1..{MAX_WIDTH})")
        if b.shape != (w.shape[1],):
            raise AccuracyPredictorError(f"{where}: bias_{i} has shape {b.shape}; expected ({w.shape[1]},)")
        width = w.shape[1]
    if width != 1:
        raise AccuracyPredictorError(f"{where}: the last layer has {width} outputs; expected 1")
    if not all(np.isfinite(a).all() for a in (*weights, *biases)):
        raise AccuracyPredictorError(f"{where}: weights contain NaN or infinity")


def _check_retired(arrays: Mapping[str, np.ndarray], version: int, where: str) -> None:
    """The `RETIRED_ARRAYS` of an older file: present where its version required them, and all
    zero (the engine has no such term, so a non-zero entry would be silently dropped). Subnormal
    values count as zero, as `_flush_subnormals` made them when the term was still computed."""
    for key, versions in RETIRED_ARRAYS.items():
        if key not in arrays:
            if version in versions:
                raise AccuracyPredictorError(f"{where}: a version {version} file needs '{key}'")
            continue
        array = arrays[key]
        if not np.issubdtype(array.dtype, np.floating):
            raise AccuracyPredictorError(f"{where}: '{key}' has dtype {array.dtype}; expected float")
        bad = np.flatnonzero(~(np.abs(array.reshape(-1)) < np.finfo(np.float32).tiny))   # NaN too
        if bad.size:
            index = np.unravel_index(bad[0], array.shape) if array.ndim else ()
            raise AccuracyPredictorError(
                f"{where}: '{key}' has {bad.size} non-zero entries (the first: {float(array[index])!r} at "
                f"index {list(map(int, index))}); allowed: all zeros, or no '{key}' at all. This ofa_engine "
                f"computes only mean + MLP (the research baselines that set '{key}' are in "
                f"benchmarks/accuracy_predictor_report.py): refit with `fit-accuracy-predictor`")


class MacsProxy:
    """Stands in for an accuracy predictor where a supernet has none: the search then ranks
    subnets by MACs (more MACs, assumed more accurate), an explicit proxy. `predict` gives
    macs / largest subnet's MACs, in (0, 1]: a score, not an accuracy; `source` says so, and the
    pipeline's report names it."""

    source = "proxy: MACs"

    def __init__(self, space: Any):
        self.space = space
        self._analyze = family_of(space, fast=False).analyze
        self._largest = float(self._analyze(space.largest())["macs"])
        self.metadata: dict[str, Any] = {"proxy": self.source}

    def predict(self, configs) -> np.ndarray:
        macs = self._analyze(configs)["macs"]
        return np.asarray(macs, np.float64).reshape(-1) / self._largest


# ---------------------------------------------------------------------- loading
def load_accuracy_predictor(name_or_path: str | Path = "tiny-fmnist",
                            space: Any = None) -> AccuracyPredictor:
    """A bundled predictor by space name ('tiny-fmnist') or a file written by `save` (the .npz,
    or its .json). `space`: the space the file is for when it is not a preset (a package's own
    space); the file must name it. Never executes code from the file; `AccuracyPredictorError`
    (a `ValueError`) names the file and the problem when it cannot be used."""
    path = resolve_name_or_path(name_or_path, BUNDLED_PREDICTORS, "accuracy predictor",
                                error=AccuracyPredictorError, readme="assets/supernets/tiny-fmnist/PREDICTOR.md")
    npz_path, json_path = _paths(path)
    arrays = _read_npz(npz_path)
    where = str(npz_path)

    def scalar(key: str, kind: type):
        value = arrays[key]
        if value.shape != () or not np.issubdtype(value.dtype, np.str_ if kind is str else np.number):
            raise AccuracyPredictorError(f"{where}: '{key}' must be a {kind.__name__} scalar")
        return kind(value)

    required = ["format", "version", "space", "n_layers", "baseline_bias", "target_scale"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise AccuracyPredictorError(f"{where}: not an accuracy-predictor file (missing {missing})")
    if scalar("format", str) != FORMAT:
        raise AccuracyPredictorError(f"{where}: format is '{scalar('format', str)}'; expected '{FORMAT}'")
    version = scalar("version", int)
    if version not in READABLE_VERSIONS:
        raise AccuracyPredictorError(f"{where}: version {version} is not supported "
                                     f"(this ofa_engine reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    _check_retired(arrays, version, where)
    if space is not None:
        if scalar("space", str) != space.name:
            raise AccuracyPredictorError(f"{where}: 'space' is '{scalar('space', str)}'; expected "
                                         f"'{space.name}' (the supernet's space)")
    else:
        try:
            space = family_of(scalar("space", str), fast=False).space
        except ValueError as exc:
            raise AccuracyPredictorError(f"{where}: {exc}") from None
    n_layers = scalar("n_layers", int)
    if not 1 <= n_layers <= _MAX_LAYERS:
        raise AccuracyPredictorError(f"{where}: n_layers = {n_layers}; allowed 1..{_MAX_LAYERS}")
    keys = [f"{kind}_{i}" for i in range(n_layers) for kind in ("weight", "bias")]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise AccuracyPredictorError(f"{where}: missing arrays {missing[:4]}")
    for key in keys:
        if not np.issubdtype(arrays[key].dtype, np.floating):
            raise AccuracyPredictorError(f"{where}: '{key}' has dtype {arrays[key].dtype}; expected float")
    weights = [arrays[f"weight_{i}"] for i in range(n_layers)]
    biases = [arrays[f"bias_{i}"] for i in range(n_layers)]
    _check_shapes(space, weights, biases, where)
    baseline_bias, target_scale = scalar("baseline_bias", float), scalar("target_scale", float)
    if not (math.isfinite(baseline_bias) and math.isfinite(target_scale)):
        raise AccuracyPredictorError(f"{where}: baseline_bias / target_scale must be finite")
    metadata = _read_metadata(json_path, space)
    return AccuracyPredictor(space, weights, biases, baseline_bias, target_scale, metadata)


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix == ".json":
        return path.with_suffix(".npz"), path
    if path.suffix != ".npz":
        raise AccuracyPredictorError(f"'{path}': an accuracy predictor is a .npz file (with a .json beside it)")
    return path, path.with_suffix(".json")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise AccuracyPredictorError(f"{path}: file not found")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise AccuracyPredictorError(f"{path}: {path.stat().st_size} bytes is too large for an accuracy predictor")
    try:
        with zipfile.ZipFile(path) as zf:
            # Refuse zip bombs before anything is decompressed.
            if sum(info.file_size for info in zf.infolist()) > 4 * _MAX_FILE_BYTES:
                raise AccuracyPredictorError(f"{path}: arrays too large for an accuracy predictor")
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except AccuracyPredictorError:
        raise
    except Exception as exc:  # zip, npy header and "Object arrays cannot be loaded" all differ
        raise AccuracyPredictorError(f"{path}: not a readable .npz of plain arrays "
                                     f"({type(exc).__name__}: {exception_reason(exc)})") from None


class _Quality(BaseModel):
    model_config = ConfigDict(extra="allow")

    rmse_points: Optional[float] = None
    mae_points: Optional[float] = None
    kendall_tau: Optional[float] = None
    n_test: Optional[int] = None
    n_train: Optional[int] = None


class _Metadata(BaseModel):
    """The .json beside the weights: what the app and the reports read; anything else is kept."""

    model_config = ConfigDict(extra="allow")

    format: Optional[Literal["ofa-engine/accuracy-predictor"]] = None
    version: Optional[int] = None
    space: Optional[str] = None
    supernet: Optional[str] = None
    supernet_digest: Optional[str] = None
    quality: Optional[_Quality] = None
    training: Optional[dict[str, Any]] = None
    command: Optional[str] = None


def _read_metadata(path: Path, space: Any) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        meta = read_json(path, f"{path}: metadata")
    except OSError as exc:
        raise AccuracyPredictorError(f"{path}: metadata cannot be read ({exc})") from None
    except ValueError as exc:   # names the file and the syntax error or the limit
        raise AccuracyPredictorError(str(exc)) from None
    if not isinstance(meta, dict):
        raise AccuracyPredictorError(f"{path}: metadata must be a JSON object")
    try:
        _Metadata.model_validate(meta)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(map(str, error["loc"]))
        raise AccuracyPredictorError(f"{path}: metadata field '{field}' = {error.get('input')!r}: "
                                     f"{error['msg']}") from None
    if meta.get("space", space.name) != space.name:
        raise AccuracyPredictorError(f"{path}: metadata is for space '{meta.get('space')}', "
                                     f"the weights for '{space.name}'")
    return meta


# ---------------------------------------------------------------------- the estimator
class MLPEnsembleRegressor:
    """MLP regression on encoded rows, scikit-learn style: `fit(X, y) -> self`, `predict(X)`.

    The targets are centred and scaled to unit variance; the MLP (ReLU between `hidden`
    layers, zero-initialised output, so it starts from the mean) is trained with Adam, a cosine
    learning rate and MSE, seeded and deterministic on CPU. `ensemble=K` trains K MLPs (seeds
    `seed`, ..., `seed + K - 1`) and keeps their average as one MLP: hidden layers side by side,
    block-diagonal weights between them, the output layer divided by K (widths K x `hidden`).
    Averaging removes the part of each member's error that depends on its seed.

    Fitted attributes: `weights_` ((in, out) float32 per layer), `biases_`, `offset_` (the
    targets' mean), `scale_` (their standard deviation).
    """

    def __init__(self, hidden: Sequence[int] = DEFAULT_HIDDEN, epochs: int = 300, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = DEFAULT_WEIGHT_DECAY, seed: int = 0,
                 ensemble: int = DEFAULT_ENSEMBLE):
        self.hidden, self.epochs, self.batch_size, self.lr = hidden, epochs, batch_size, lr
        self.weight_decay, self.seed, self.ensemble = weight_decay, seed, ensemble

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters (as scikit-learn's `get_params`)."""
        return {"hidden": list(self.hidden), "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "weight_decay": self.weight_decay, "seed": self.seed, "ensemble": self.ensemble}

    def fit(self, X: np.ndarray, y: Sequence[float] | np.ndarray) -> "MLPEnsembleRegressor":
        """Fit to rows `X` (N, features) and targets `y` (N,); returns self."""
        ensemble, hidden = self.ensemble, self.hidden
        if not (isinstance(ensemble, int) and 1 <= ensemble <= 64):
            raise ValueError(f"ensemble must be an integer 1..64, got {ensemble!r}")
        if any(w * ensemble > MAX_WIDTH for w in hidden):
            raise ValueError(f"ensemble {ensemble} x hidden {list(hidden)} is wider than {MAX_WIDTH} units")
        x = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or len(y) != len(x) or len(y) < 2:
            raise ValueError(f"need at least 2 configs with one accuracy each, got {len(x)} configs "
                             f"and {len(y)} accuracies")
        if not np.isfinite(y).all():
            raise ValueError("accuracies contain NaN or infinity")
        offset = float(y.mean())
        residual = y - offset
        scale = float(residual.std()) or 1.0
        from .accuracy_torch import average_mlps, train_mlp
        target = (residual / scale).astype(np.float32)
        members = [train_mlp(x, target, hidden, self.epochs, self.batch_size, self.lr, self.weight_decay,
                             self.seed + k) for k in range(ensemble)]
        weights, biases = average_mlps(members)
        self.weights_ = [_flush_subnormals(w) for w in weights]
        self.biases_ = [_flush_subnormals(b).reshape(-1) for b in biases]
        self.offset_, self.scale_ = offset, scale
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows `X` (N, features), float64 (N,)."""
        self._check_fitted()
        return _forward(_rows(X, self.n_features_in_), self.weights_, self.biases_, self.scale_, self.offset_)

    def torch_module(self) -> "nn.Module":
        """A differentiable float32 twin: rows (N, features) -> (N,) predictions, frozen
        parameters (gradients flow to the input only; the gradient search uses it)."""
        self._check_fitted()
        from .accuracy_torch import ScaledMLP
        return ScaledMLP(self.weights_, self.biases_, self.scale_, self.offset_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise ValueError("this MLPEnsembleRegressor is not fitted yet: call fit(X, y) first")


def fit_accuracy_predictor(space: Any, configs, accuracies: Sequence[float] | np.ndarray, *,
                           hidden: Sequence[int] = DEFAULT_HIDDEN, epochs: int = 300, batch_size: int = 64,
                           lr: float = 1e-3, weight_decay: float = DEFAULT_WEIGHT_DECAY, seed: int = 0,
                           ensemble: int = DEFAULT_ENSEMBLE) -> AccuracyPredictor:
    """The shipped model: `MLPEnsembleRegressor` fitted on the family's `encode(configs)` ->
    `accuracies` (fractions), as an `AccuracyPredictor` of `space` whose metadata records the
    hyper-parameters."""
    x = family_of(space, fast=False).encode(configs)
    estimator = MLPEnsembleRegressor(hidden, epochs, batch_size, lr, weight_decay, seed, ensemble).fit(x, accuracies)
    params = estimator.get_params()
    training = {"hidden": params["hidden"], "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "weight_decay": weight_decay, "seed": seed, "ensemble": ensemble, "n_train": len(x)}
    return AccuracyPredictor.from_estimator(space, estimator, {"training": training})


def evaluate_accuracy_predictor(predictor: AccuracyPredictor, configs, accuracies) -> dict[str, float]:
    """RMSE and MAE in accuracy points (percent), Kendall tau and n_test on (configs, accuracies)."""
    y = np.asarray(accuracies, dtype=np.float64)
    predicted = predictor.predict(configs)
    error = predicted - y
    return {"rmse_points": float(np.sqrt(np.mean(error ** 2)) * 100),
            "mae_points": float(np.mean(np.abs(error)) * 100),
            "kendall_tau": kendall_tau(predicted, y),
            "n_test": int(len(y))}


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()

