"""A package's accuracy predictor, any family: held-out quality against simple baselines, and speed.

    python benchmarks/package_predictor_report.py --supernet vit-fmnist --out docs/vit-predictor-report.md \
        [--plot docs/img/accuracy-vit-fmnist.png]

Reads the package's `accuracy-dataset.csv` (subnets labelled by `accuracy-dataset`) and its
shipped predictor (`fit-accuracy-predictor`, which trains on a seeded 80 % of the rows and
records its quality on the other 20 %). On that same held-out 20 % (the split is recomputed with
the seed and fraction the predictor's metadata records) it compares:
- the shipped predictor (RMSE in accuracy points, Kendall tau, worst error);
- a constant (the training rows' mean accuracy): the RMSE a predictor must beat;
- MACs as a proxy (the rank order of the app's fallback when a package has no predictor: tau only);
- ridge regression on the same encoding (the family's `encode`), penalty chosen on the training rows.
Then it times the predictor on 10,000 random configs (one thread, median of 5) and, with
`--plot`, draws predicted vs measured for the held-out rows. Prints the markdown and writes it
to `--out`, with the command, the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")   # timings are for one thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install

from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.families import family_of  # noqa: E402
from ofa_engine.packages import load_package  # noqa: E402
from ofa_engine.predictors.accuracy import kendall_tau, train_test_split  # noqa: E402
from ofa_engine.predictors.linear import ridge_solve  # noqa: E402
from ofa_engine.training.accuracy_dataset import read_accuracy_csv  # noqa: E402

RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def rmse_points(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - measured) ** 2)) * 100)


def ridge_on_encoding(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Ridge with an intercept; the penalty by 5-fold cross-validation on the training rows."""
    def fit(x, y, penalty):
        xi = np.hstack([x, np.ones((len(x), 1))])
        return ridge_solve(xi, y, penalty, unpenalized=[x.shape[1]])

    def predict(coef, x):
        return np.hstack([x, np.ones((len(x), 1))]) @ coef

    folds = np.array_split(np.random.default_rng(seed).permutation(len(x_train)), 5)
    scores = []
    for penalty in RIDGE_PENALTIES:
        errors = []
        for k in range(5):
            val = folds[k]
            tr = np.concatenate([folds[j] for j in range(5) if j != k])
            errors.append(rmse_points(predict(fit(x_train[tr], y_train[tr], penalty), x_train[val]), y_train[val]))
        scores.append(np.mean(errors))
    best = RIDGE_PENALTIES[int(np.argmin(scores))]
    return predict(fit(x_train, y_train, best), x_test), best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", required=True, help="a package with an accuracy predictor (bundled name or folder)")
    p.add_argument("--out", help="markdown file to write (default: print only)")
    p.add_argument("--plot", help="PNG of predicted vs measured on the held-out rows")
    args = p.parse_args()

    package = load_package(args.supernet, weights=False)
    predictor = package.accuracy_predictor
    if predictor is None:
        raise SystemExit(f"--supernet {args.supernet}: the package has no accuracy predictor "
                         f"(fit-accuracy-predictor --supernet {args.supernet})")
    space = package.space
    family = family_of(space, fast=False)
    csv = package.path / "accuracy-dataset.csv"
    rows = read_accuracy_csv(csv, space)
    configs = [r["config"] for r in rows]
    y = np.array([r["accuracy"] for r in rows])
    recorded = predictor.quality or {}
    split = str(recorded.get("split", "seeded 20% held-out (seed 0)"))
    seed = int(split.rsplit("seed", 1)[1].strip(" )")) if "seed" in split else 0
    fraction = float(split.split("%")[0].split()[-1]) / 100 if "%" in split else 0.2
    train, test = train_test_split(len(rows), fraction, seed)
    y_train, y_test = y[train], y[test]

    shipped = predictor.predict([configs[i] for i in test])
    macs = np.array([family.analyze(configs[i])["macs"] for i in test], np.float64)
    x = family.encode(configs).astype(np.float64)
    ridge, penalty = ridge_on_encoding(x[train], y_train, x[test], seed)
    constant = np.full(len(test), y_train.mean())

    rng = np.random.default_rng(0)
    sample = [space.sample(rng) for _ in range(10_000)]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        predictor.predict(sample)
        times.append(time.perf_counter() - t0)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/package_predictor_report.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Accuracy predictor: {package.name}",
        "",
        f"Produced by `{cmd}` on {now}, {cpu_model()}.",
        "",
        f"- Package: `{package.name}` (space `{space.name}`, family `{family.family}`); dataset "
        f"`{csv.relative_to(ROOT) if csv.is_relative_to(ROOT) else csv}`: {len(rows)} subnets (the largest, the "
        f"smallest, then uniform random ones), each labelled with its top-1 accuracy on the 5k "
        f"Fashion-MNIST holdout that training never saw"
        f"{' (BN recalibrated)' if family.family == 'mbv3' else ''}; measured accuracies "
        f"{y.min() * 100:.2f}-{y.max() * 100:.2f} %.",
        f"- Predictor: the package's `accuracy-predictor.npz`; command: `{predictor.metadata.get('command')}`.",
        f"- Held out: the {len(test)} rows of the predictor's own split ({split}); it was trained on the other "
        f"{len(train)}.",
        "",
        "| on the held-out rows | RMSE (points) | Kendall tau | worst error (points) |",
        "|---|---:|---:|---:|",
        f"| **shipped predictor** (MLP on the one-hot encoding) | **{rmse_points(shipped, y_test):.3f}** | "
        f"**{kendall_tau(shipped, y_test):.3f}** | {np.abs(shipped - y_test).max() * 100:.2f} |",
        f"| ridge on the same encoding (penalty {penalty:g}, 5-fold CV on the training rows) | "
        f"{rmse_points(ridge, y_test):.3f} | {kendall_tau(ridge, y_test):.3f} | {np.abs(ridge - y_test).max() * 100:.2f} |",
        f"| MACs as a proxy (rank order only) | - | {kendall_tau(macs, y_test):.3f} | - |",
        f"| constant (training mean, {y_train.mean() * 100:.2f} %) | {rmse_points(constant, y_test):.3f} | - | "
        f"{np.abs(constant - y_test).max() * 100:.2f} |",
        "",
        f"Recorded by `fit-accuracy-predictor` in the predictor's metadata: RMSE "
        f"{recorded.get('rmse_points', float('nan')):.3f} points, Kendall tau {recorded.get('kendall_tau', float('nan')):.3f} "
        f"(the same rows, so the same numbers up to rounding).",
        "",
        f"Prediction time: {statistics.median(times) * 1e3:.1f} ms for 10,000 random configs (one thread, "
        f"median of 5: {', '.join(f'{t * 1e3:.1f}' for t in times)} ms).",
    ]
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
        ax.scatter(y_test * 100, shipped * 100, s=10)
        lo, hi = float(min(y_test.min(), shipped.min()) * 100) - 0.2, float(max(y_test.max(), shipped.max()) * 100) + 0.2
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        ax.set_xlabel("measured accuracy (%), 5k holdout")
        ax.set_ylabel("predicted accuracy (%)")
        ax.set_title(f"{package.name}: {len(test)} held-out subnets")
        fig.tight_layout()
        fig.savefig(args.plot)
        lines += ["", f"![predicted vs measured]({os.path.relpath(args.plot, Path(args.out).parent if args.out else '.')})"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
