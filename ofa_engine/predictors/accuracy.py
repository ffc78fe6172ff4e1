"""Accuracy predictor: the OFA-style MLP over the one-hot subnet encoding.

`predict` runs in numpy on whole batches (a population or a list of configs); `torch_module`
gives the same function as a differentiable `nn.Module` for gradient-based search. The network
is `accuracy = baseline(x) + target_scale * mlp(x)` where `x = space.encode(configs)`,
`baseline` is a ridge regression fitted first and the MLP (ReLU hidden layers, as OFA's 3 x 400)
learns the normalised residual. The baseline is `x . w + b + x^T Q x`: a line, plus (for the
"interaction-ridge" baseline) pairwise products of encoding entries, which is how resolution x
width and resolution x per-stage choices enter; with Q = 0 it is the line of version 1 files.

Files hold no pickles: an `.npz` with the arrays (loaded with `allow_pickle=False`) and a JSON
file beside it with metadata (space, supernet digest, quality, the command that made it).

    python -m ofa_engine fit-accuracy-predictor --csv assets/predictors/tiny-fmnist-accuracy.csv \\
        --out assets/predictors/tiny-fmnist-accuracy.npz
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..datasets.images import ASSETS_DIR
from ..families.mbv3.space import SearchSpace, SubnetConfig
from .metrics import kendall_tau, split_indices as train_test_split  # noqa: F401  (API)

__all__ = ["AccuracyPredictor", "AccuracyPredictorError", "load_accuracy_predictor",
           "fit_accuracy_predictor", "evaluate_accuracy_predictor", "train_test_split",
           "kendall_tau", "BUNDLED_PREDICTORS"]

FORMAT = "ofa-engine/accuracy-predictor"
VERSION = 2                  # 2 added `quadratic_weight`; version 1 files (no such array) still load
READABLE_VERSIONS = (1, 2)
PREDICTORS_DIR = ASSETS_DIR / "predictors"
BUNDLED_PREDICTORS = {"tiny-fmnist": PREDICTORS_DIR / "tiny-fmnist-accuracy.npz"}
_MAX_FILE_BYTES = 64 << 20       # a 3 x 400 MLP is ~1.5 MB; anything this big is not ours
_MAX_LAYERS = 16
MAX_WIDTH = 4096
# Chosen by cross-validation in benchmarks/accuracy_predictor_report.py (see the report).
# On the 1,602 training rows of the supernet bundled on 2026-11-28 (3-fold CV): ridge lines score
# 0.567-0.573 points RMSE (0.568 with resolution interactions), MLPs on the residual of a ridge
# line 0.47-0.57, OFA's 3 x 400 MLP on the encoding with centred targets 0.492 (240 s to fit,
# 560 ms for 10k configs), a 128-128 MLP 0.501, and an MLP whose first hidden layer is a
# 2-unit bottleneck (2 then 128) 0.433 (4 s to fit, well under 50 ms for 10k configs; a 4-unit
# one 0.438, 8 units 0.462, 16 units 0.526): accuracy varies along very few directions of the
# encoding, and the bottleneck keeps the MLP from fitting label noise. (On the 802 rows of the
# first supernet the ridge lines had done as well as any MLP.) The same table on the supernet
# rebundled later that day (with its `all` phase): 2-128 0.373, 4-128 0.376, 128-128 0.451,
# ridge lines 0.491-0.517. The default is the 4-unit bottleneck: as good in cross-validation, and
# the 2-unit one saturates at the top (both ReLU units at zero): 82 of 20,000 random configs got
# exactly its maximum, 91.01%, so a search could not tell the best subnets apart (4 units: one).
# The default averages 3 of them (seeds 0-2): an average's squared error is never above its
# members' mean squared error. On the 5,602 training rows of the 7,002-row dataset the held-out
# RMSE is 0.299 for one, 0.2950 for 3 and 0.2949 for 5 (the MLP part of predicting 10k configs
# took about 2 ms for one and 19 ms for 5, on a busy machine); on 1,602 rows 3 scored 0.345
# against 0.346-0.361 for each alone.
DEFAULT_HIDDEN = (4, 128)
DEFAULT_BASELINE = "mean"
DEFAULT_RIDGE_ALPHA = 0.3
DEFAULT_MLP_INPUTS = "encoding"
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_ENSEMBLE = 3


class AccuracyPredictorError(ValueError):
    """An accuracy-predictor file that cannot be used; the message names the file and the problem."""


# ---------------------------------------------------------------------- the predictor
@dataclass(eq=False)
class AccuracyPredictor:
    """Predicts top-1 accuracy (fraction 0..1) of subnets of `space`.

    `weights[i]` has shape (in, out); the last layer has out = 1. `metadata` is the JSON side
    file (may be empty for a predictor that was never saved).
    """

    space: SearchSpace
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    baseline_weight: np.ndarray          # (encoding_size,)
    baseline_bias: float
    target_scale: float
    metadata: dict[str, Any] = field(default_factory=dict)
    quadratic_weight: np.ndarray | None = None   # (encoding_size, encoding_size); None = zeros

    def __post_init__(self) -> None:
        self.weights = [_flush_subnormals(w) for w in self.weights]
        self.biases = [_flush_subnormals(b).reshape(-1) for b in self.biases]
        self.baseline_weight = _flush_subnormals(self.baseline_weight).reshape(-1)
        self.baseline_bias = float(self.baseline_bias)
        self.target_scale = float(self.target_scale)
        size = self.space.encoding_size
        quadratic = np.zeros((size, size)) if self.quadratic_weight is None else self.quadratic_weight
        self.quadratic_weight = _flush_subnormals(quadratic)
        _check_shapes(self.space, self.weights, self.biases, self.baseline_weight, "predictor",
                      self.quadratic_weight)
        # Only the rows of Q with an entry take part (the resolution rows, for our baselines).
        self._quadratic_rows = np.flatnonzero(np.abs(self.quadratic_weight).sum(1))

    @property
    def quality(self) -> dict[str, Any] | None:
        """Held-out quality: rmse_points, kendall_tau, n_train, n_test (None when unknown)."""
        return self.metadata.get("quality")

    def predict(self, configs: SubnetConfig | Sequence[SubnetConfig] | Mapping[str, np.ndarray]) -> np.ndarray:
        """Accuracy fraction of each config (a list of `SubnetConfig` or a population), (N,) float64."""
        return self.predict_encoded(self.space.encode(configs))

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        """Same as `predict`, from `space.encode` output (N, encoding_size)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.space.encoding_size:
            raise ValueError(f"encoding must have shape (N, {self.space.encoding_size}), got {x.shape}")
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = h @ w
            h += b
            np.maximum(h, 0.0, out=h)
        out = (h @ self.weights[-1])[:, 0] + self.biases[-1][0]
        out *= self.target_scale
        out += x @ self.baseline_weight
        out += self.baseline_bias
        rows = self._quadratic_rows
        if rows.size:
            out += np.einsum("ij,ij->i", x[:, rows] @ self.quadratic_weight[rows], x)
        return out.astype(np.float64)

    def torch_module(self) -> nn.Module:
        """A differentiable float32 `nn.Module`: encoding (N, encoding_size) -> (N,) accuracy.
        Its parameters are frozen copies (gradients flow to the input only)."""
        return _PredictorModule(self)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
        """Write `path` (.npz) and its metadata JSON beside it, atomically; returns the npz path."""
        npz_path, json_path = _paths(path)
        if metadata is not None:
            self.metadata = dict(metadata)
        arrays = {"format": np.array(FORMAT), "version": np.array(VERSION),
                  "space": np.array(self.space.name), "n_layers": np.array(len(self.weights)),
                  "baseline_weight": self.baseline_weight,
                  "baseline_bias": np.array(self.baseline_bias, dtype=np.float64),
                  "target_scale": np.array(self.target_scale, dtype=np.float64),
                  "quadratic_weight": self.quadratic_weight}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"weight_{i}"], arrays[f"bias_{i}"] = w, b
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": VERSION, "space": self.space.name, **self.metadata}
        _atomic_write(npz_path, lambda fh: np.savez(fh, **arrays))
        _atomic_write(json_path, lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode()))
        return npz_path


class _PredictorModule(nn.Module):
    def __init__(self, predictor: AccuracyPredictor):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(predictor.weights, predictor.biases)):
            linear = nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if i < len(predictor.weights) - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        self.baseline = nn.Linear(predictor.space.encoding_size, 1)
        with torch.no_grad():
            self.baseline.weight.copy_(torch.from_numpy(predictor.baseline_weight)[None])
            self.baseline.bias.fill_(predictor.baseline_bias)
        self.target_scale = predictor.target_scale
        rows = predictor._quadratic_rows
        self.register_buffer("quadratic_rows", torch.from_numpy(rows.astype(np.int64)))
        self.register_buffer("quadratic", torch.from_numpy(predictor.quadratic_weight[rows].copy()))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(x)[:, 0] * self.target_scale + self.baseline(x)[:, 0]
        if self.quadratic_rows.numel():
            out = out + ((x[:, self.quadratic_rows] @ self.quadratic) * x).sum(1)
        return out


def _flush_subnormals(array) -> np.ndarray:
    """float32, C-contiguous, with subnormal values set to 0. Weight decay leaves weights of
    ~1e-39, and a matmul over subnormals runs ~10-40x slower on x86 (measured: 10k predictions
    84 ms with them, 5 ms without); their effect on the output is below float32 resolution."""
    out = np.array(array, dtype=np.float32, order="C")
    out[np.abs(out) < np.finfo(np.float32).tiny] = 0.0
    return out


def _check_shapes(space: SearchSpace, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray],
                  baseline_weight: np.ndarray, where: str, quadratic_weight: np.ndarray | None = None) -> None:
    if not 1 <= len(weights) <= _MAX_LAYERS or len(weights) != len(biases):
        raise AccuracyPredictorError(f"{where}: needs 1..{_MAX_LAYERS} layers with one bias each, "
                                     f"got {len(weights)} weights and {len(biases)} biases")
    width = space.encoding_size
    for i, (w, b) in enumerate(zip(weights, biases)):
        if w.ndim != 2 or w.shape[0] != width or not 1 <= w.shape[1] <= MAX_WIDTH:
            raise AccuracyPredictorError(f"{where}: weight_{i} has shape {w.shape}; expected ({width}, 1..{MAX_WIDTH})")
        if b.shape != (w.shape[1],):
            raise AccuracyPredictorError(f"{where}: bias_{i} has shape {b.shape}; expected ({w.shape[1]},)")
        width = w.shape[1]
    if width != 1:
        raise AccuracyPredictorError(f"{where}: the last layer has {width} outputs; expected 1")
    if baseline_weight.shape != (space.encoding_size,):
        raise AccuracyPredictorError(f"{where}: baseline_weight has shape {baseline_weight.shape}; "
                                     f"expected ({space.encoding_size},)")
    size = space.encoding_size
    if quadratic_weight is not None and quadratic_weight.shape != (size, size):
        raise AccuracyPredictorError(f"{where}: quadratic_weight has shape {quadratic_weight.shape}; "
                                     f"expected ({size}, {size})")
    extra = () if quadratic_weight is None else (quadratic_weight,)
    if not all(np.isfinite(a).all() for a in (*weights, *biases, baseline_weight, *extra)):
        raise AccuracyPredictorError(f"{where}: weights contain NaN or infinity")


# ---------------------------------------------------------------------- loading
def load_accuracy_predictor(name_or_path: str | Path = "tiny-fmnist") -> AccuracyPredictor:
    """A bundled predictor by space name ('tiny-fmnist') or a file written by `save` (the .npz,
    or its .json). Never executes code from the file; `AccuracyPredictorError` (a `ValueError`)
    names the file and the problem when it cannot be used."""
    if str(name_or_path) in BUNDLED_PREDICTORS:
        path = BUNDLED_PREDICTORS[str(name_or_path)]
        if not path.exists():
            raise FileNotFoundError(f"bundled accuracy predictor {path} is missing; see "
                                    f"assets/predictors/README.md for the command that makes it")
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise AccuracyPredictorError(
                f"accuracy predictor '{name_or_path}' is neither a bundled name "
                f"({', '.join(BUNDLED_PREDICTORS)}) nor an existing file")
    npz_path, json_path = _paths(path)
    arrays = _read_npz(npz_path)
    where = str(npz_path)

    def scalar(key: str, kind: type):
        value = arrays[key]
        if value.shape != () or not np.issubdtype(value.dtype, np.str_ if kind is str else np.number):
            raise AccuracyPredictorError(f"{where}: '{key}' must be a {kind.__name__} scalar")
        return kind(value)

    required = ["format", "version", "space", "n_layers", "baseline_weight", "baseline_bias", "target_scale"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise AccuracyPredictorError(f"{where}: not an accuracy-predictor file (missing {missing})")
    if scalar("format", str) != FORMAT:
        raise AccuracyPredictorError(f"{where}: format is '{scalar('format', str)}'; expected '{FORMAT}'")
    version = scalar("version", int)
    if version not in READABLE_VERSIONS:
        raise AccuracyPredictorError(f"{where}: version {version} is not supported "
                                     f"(this ofa_engine reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    if version >= 2 and "quadratic_weight" not in arrays:
        raise AccuracyPredictorError(f"{where}: a version {version} file needs 'quadratic_weight'")
    try:
        space = SearchSpace.preset(scalar("space", str))
    except ValueError as exc:
        raise AccuracyPredictorError(f"{where}: {exc}") from None
    n_layers = scalar("n_layers", int)
    if not 1 <= n_layers <= _MAX_LAYERS:
        raise AccuracyPredictorError(f"{where}: n_layers = {n_layers}; allowed 1..{_MAX_LAYERS}")
    keys = [f"{kind}_{i}" for i in range(n_layers) for kind in ("weight", "bias")]
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise AccuracyPredictorError(f"{where}: missing arrays {missing[:4]}")
    optional = ["quadratic_weight"] if version >= 2 else []
    for key in keys + ["baseline_weight"] + optional:
        if not np.issubdtype(arrays[key].dtype, np.floating):
            raise AccuracyPredictorError(f"{where}: '{key}' has dtype {arrays[key].dtype}; expected float")
    weights = [arrays[f"weight_{i}"] for i in range(n_layers)]
    biases = [arrays[f"bias_{i}"] for i in range(n_layers)]
    quadratic = arrays["quadratic_weight"] if version >= 2 else None
    _check_shapes(space, weights, biases, arrays["baseline_weight"], where, quadratic)
    baseline_bias, target_scale = scalar("baseline_bias", float), scalar("target_scale", float)
    if not (math.isfinite(baseline_bias) and math.isfinite(target_scale)):
        raise AccuracyPredictorError(f"{where}: baseline_bias / target_scale must be finite")
    metadata = _read_metadata(json_path, space)
    return AccuracyPredictor(space, weights, biases, arrays["baseline_weight"], baseline_bias,
                             target_scale, metadata, quadratic_weight=quadratic)


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
        first_line = (str(exc).splitlines() or [""])[0][:200]
        raise AccuracyPredictorError(f"{path}: not a readable .npz of plain arrays "
                                     f"({type(exc).__name__}: {first_line})") from None


def _read_metadata(path: Path, space: SearchSpace) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        if path.stat().st_size > 1 << 20:
            raise ValueError("larger than 1 MiB")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AccuracyPredictorError(f"{path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise AccuracyPredictorError(f"{path}: metadata must be a JSON object")
    if meta.get("space", space.name) != space.name:
        raise AccuracyPredictorError(f"{path}: metadata is for space '{meta.get('space')}', "
                                     f"the weights for '{space.name}'")
    quality = meta.get("quality")
    if quality is not None and not isinstance(quality, dict):
        raise AccuracyPredictorError(f"{path}: 'quality' must be an object")
    return meta


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------- training
def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge regression with an unpenalised intercept, in float64."""
    x = x.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean()
    xc = x - x_mean
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return w, float(y_mean - x_mean @ w)


def stage_summary_projection(space: SearchSpace) -> np.ndarray:
    """(encoding_size, k) matrix turning the one-hot encoding into per-stage counts: resolution
    and width one-hots as they are, then per stage how many active blocks use each kernel size
    and each expand ratio. A linear map, so a line fitted on it is still a line on the encoding."""
    n_res, n_wid = len(space.resolutions), len(space.width_mults)
    n_choice = len(space.kernel_sizes) + len(space.expand_ratios)
    head = n_res + n_wid
    projection = np.zeros((space.encoding_size, head + space.num_stages * n_choice))
    projection[:head, :head] = np.eye(head)
    for slot in range(space.num_slots):
        stage = slot // space.max_depth
        rows = head + slot * n_choice + np.arange(n_choice)
        projection[rows, head + stage * n_choice + np.arange(n_choice)] = 1.0
    return projection


def interaction_features(space: SearchSpace, x: np.ndarray) -> tuple[np.ndarray, Callable]:
    """Features of the "interaction-ridge" baseline from the encoding `x`: the per-stage counts
    (`stage_summary_projection`), then resolution x width and resolution x per-stage counts
    (products of one-hot entries). Returns (features, to_weights) where `to_weights(theta)` maps
    coefficients of these features back to (w, Q) on the encoding: features @ theta ==
    x @ w + rowwise(x^T Q x) exactly, so the fitted baseline is stored as a line plus Q."""
    projection = stage_summary_projection(space)
    n_res, n_wid = len(space.resolutions), len(space.width_mults)
    head = n_res + n_wid
    summary = x @ projection
    res, wid, counts = x[:, :n_res], x[:, n_res:head], summary[:, head:]
    n_counts = counts.shape[1]
    features = np.concatenate([summary, (res[:, :, None] * wid[:, None, :]).reshape(len(x), -1),
                               (res[:, :, None] * counts[:, None, :]).reshape(len(x), -1)], 1)

    def to_weights(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        linear = projection @ theta[:projection.shape[1]]
        rest = theta[projection.shape[1]:]
        res_wid = rest[:n_res * n_wid].reshape(n_res, n_wid)
        res_counts = rest[n_res * n_wid:].reshape(n_res, n_counts)
        quadratic = np.zeros((space.encoding_size, space.encoding_size))
        quadratic[:n_res, n_res:head] = res_wid
        quadratic[:n_res] += res_counts @ projection[:, head:].T
        return linear, quadratic

    return features, to_weights


def fit_accuracy_predictor(space: SearchSpace, configs, accuracies: Sequence[float] | np.ndarray, *,
                           hidden: Sequence[int] = DEFAULT_HIDDEN, baseline: str = DEFAULT_BASELINE,
                           ridge_alpha: float = DEFAULT_RIDGE_ALPHA, epochs: int = 300, batch_size: int = 64,
                           lr: float = 1e-3, weight_decay: float = DEFAULT_WEIGHT_DECAY, mlp_inputs: str = DEFAULT_MLP_INPUTS,
                           seed: int = 0, ensemble: int = DEFAULT_ENSEMBLE) -> AccuracyPredictor:
    """Train the MLP on `space.encode(configs)` -> `accuracies` (fractions).

    `baseline="ridge"` first fits a ridge line and trains the MLP on the remaining residual;
    `"stage-ridge"` fits the line on per-stage counts (`stage_summary_projection`), which
    needs far fewer rows; `"interaction-ridge"` adds resolution x width and resolution x
    per-stage counts to those (`interaction_features`); `"mean"` only centres the targets
    (OFA's choice). The residual is
    scaled to unit variance. `mlp_inputs="stage-summary"` feeds the MLP the per-stage counts
    instead of the full encoding (the projection is folded into its first layer afterwards, so
    the result is still an MLP on the encoding).
    Seeded and deterministic on CPU (Adam, cosine learning rate, MSE loss).

    `ensemble=K` trains K MLPs (seeds `seed`, ..., `seed + K - 1`, the same baseline) and
    returns their average as one MLP: hidden layers side by side, block-diagonal weights between
    them, the output layer divided by K. The file format is unchanged; the widths are K times
    `hidden`. Averaging removes the part of each member's error that depends on its seed.
    """
    if not (isinstance(ensemble, int) and 1 <= ensemble <= 64):
        raise ValueError(f"ensemble must be an integer 1..64, got {ensemble!r}")
    if any(w * ensemble > MAX_WIDTH for w in hidden):
        raise ValueError(f"ensemble {ensemble} x hidden {list(hidden)} is wider than {MAX_WIDTH} units")
    x = space.encode(configs)
    y = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    if len(y) != len(x) or len(y) < 2:
        raise ValueError(f"need at least 2 configs with one accuracy each, got {len(x)} configs "
                         f"and {len(y)} accuracies")
    if not np.isfinite(y).all():
        raise ValueError("accuracies contain NaN or infinity")
    quadratic = None
    if baseline == "ridge":
        base_w, base_b = _ridge(x, y, ridge_alpha)
    elif baseline == "interaction-ridge":
        features, to_weights = interaction_features(space, x.astype(np.float64))
        theta, base_b = _ridge(features, y, ridge_alpha)
        base_w, quadratic = to_weights(theta)
    elif baseline == "stage-ridge":
        projection = stage_summary_projection(space)
        theta, base_b = _ridge(x @ projection, y, ridge_alpha)
        base_w = projection @ theta
    elif baseline == "mean":
        base_w, base_b = np.zeros(x.shape[1]), float(y.mean())
    else:
        raise ValueError(f"baseline '{baseline}' is unknown; allowed: ridge, stage-ridge, "
                         f"interaction-ridge, mean")
    x64 = x.astype(np.float64)
    residual = y - (x64 @ base_w + base_b)
    if quadratic is not None:
        residual -= np.einsum("ij,ij->i", x64 @ quadratic, x64)
    scale = float(residual.std()) or 1.0
    target = torch.from_numpy((residual / scale).astype(np.float32))
    if mlp_inputs == "encoding":
        projection = np.eye(x.shape[1])
    elif mlp_inputs == "stage-summary":
        projection = stage_summary_projection(space)
    else:
        raise ValueError(f"mlp_inputs '{mlp_inputs}' is unknown; allowed: encoding, stage-summary")
    inputs = torch.from_numpy((x @ projection).astype(np.float32))

    members = [_train_mlp(inputs, target, hidden, epochs, batch_size, lr, weight_decay, seed + k)
               for k in range(ensemble)]
    weights, biases = _average_mlps(members)
    return AccuracyPredictor(
        space,
        weights=[projection @ weights[0].astype(np.float64), *weights[1:]],
        biases=biases,
        baseline_weight=base_w, baseline_bias=base_b, target_scale=scale, quadratic_weight=quadratic,
        metadata={"training": {"hidden": list(hidden), "baseline": baseline, "ridge_alpha": ridge_alpha,
                               "epochs": epochs, "batch_size": batch_size, "lr": lr,
                               "weight_decay": weight_decay, "mlp_inputs": mlp_inputs, "seed": seed,
                               "ensemble": ensemble, "n_train": len(y)}})


def _train_mlp(inputs: torch.Tensor, target: torch.Tensor, hidden: Sequence[int], epochs: int,
               batch_size: int, lr: float, weight_decay: float, seed: int) -> list[nn.Linear]:
    """One seeded MLP (ReLU between `hidden` layers, zero-initialised output) fitted to `target`
    with Adam, a cosine learning rate and MSE; returns its linear layers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sizes = [inputs.shape[1], *hidden, 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        mlp = nn.Sequential(*layers)
        nn.init.zeros_(layers[-1].weight)   # start from the baseline exactly
        nn.init.zeros_(layers[-1].bias)
        optimizer = torch.optim.Adam(mlp.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(target) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
        generator = torch.Generator().manual_seed(seed)
        mlp.train()
        for _ in range(epochs):
            order = torch.randperm(len(target), generator=generator)
            for start in range(0, len(target), batch_size):
                idx = order[start:start + batch_size]
                loss = torch.mean((mlp(inputs[idx])[:, 0] - target[idx]) ** 2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return [m for m in mlp if isinstance(m, nn.Linear)]


def _average_mlps(members: Sequence[Sequence[nn.Linear]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights (in, out) and biases of one MLP whose output is the mean of `members`' outputs
    (all of one shape): first layers side by side, block-diagonal hidden-to-hidden layers, the
    output layer stacked and divided by the member count."""
    k = len(members)
    layers = [[(m.weight.detach().numpy().T.astype(np.float32), m.bias.detach().numpy().astype(np.float32))
               for m in member] for member in members]
    weights = [np.concatenate([member[0][0] for member in layers], axis=1)]
    biases = [np.concatenate([member[0][1] for member in layers])]
    for i in range(1, len(layers[0])):
        rows, cols = layers[0][i][0].shape
        last = i == len(layers[0]) - 1
        w = np.zeros((rows * k, 1 if last else cols * k), dtype=np.float32)
        for j, member in enumerate(layers):
            if last:
                w[j * rows:(j + 1) * rows] = member[i][0] / k
            else:
                w[j * rows:(j + 1) * rows, j * cols:(j + 1) * cols] = member[i][0]
        weights.append(w)
        biases.append(np.mean([member[i][1] for member in layers], axis=0) if last
                      else np.concatenate([member[i][1] for member in layers]))
    return weights, biases


# ---------------------------------------------------------------------- quality
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


# ---------------------------------------------------------------------- CLI
