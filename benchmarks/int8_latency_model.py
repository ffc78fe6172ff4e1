"""The int8 latency model of this machine (ORT CPU, 1 thread): fit and report, like the fp32 one.

    python benchmarks/int8_latency_model.py [--csv assets/latency/cpu-1t-int8.csv] [--out docs/int8.md]

Fits the int8 latency dataset with the profile protocol (`profile_fit`: seeded 80/20 split, ridge
by cross-validation on the training part, scored on the held-out part, refitted on all) for the
learned block-linear model and the MACs-linear baseline, does the same on the fp32 dataset
(assets/latency/cpu-1t.csv) for comparison, writes the shipped int8 model to
assets/latency/cpu-ort-1t-int8.model.json and replaces the section "## int8 latency model" of
`--out`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, no install

from benchmarks.docsections import write_sections  # noqa: E402
from ofa_engine.devices.latency_dataset import read_latency_dataset  # noqa: E402
from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine.families.mbv3.space import SearchSpace  # noqa: E402
from ofa_engine.files import atomic_write_json  # noqa: E402
from ofa_engine.predictors.latency import profile_fit  # noqa: E402

MARKER = "## int8 latency model"


def row(name: str, q: dict) -> str:
    return (f"| {name} | {q['n_train']} / {q['n_test']} | {100 * q['mape']:.1f} | {100 * q['within_10pct']:.0f} "
            f"| {q['kendall_tau']:.3f} | {q['rmse_ms']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(ROOT / "assets" / "latency" / "cpu-1t-int8.csv"))
    parser.add_argument("--fp32-csv", default=str(ROOT / "assets" / "latency" / "cpu-1t.csv"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "int8.md"))
    parser.add_argument("--model-out", default=str(ROOT / "assets" / "latency" / "cpu-ort-1t-int8.model.json"))
    args = parser.parse_args()
    space = SearchSpace.preset("tiny-fmnist")
    configs8, ms8, _ = read_latency_dataset(args.csv)
    configs32, ms32, _ = read_latency_dataset(args.fp32_csv)
    lines = ["| model | subnets train / held out | MAPE % | within ±10 % | Kendall τ | RMSE ms |",
             "|---|---:|---:|---:|---:|---:|"]
    fits = {}
    for precision, configs, ms in (("int8", configs8, ms8), ("fp32", configs32, ms32)):
        for kind in ("learned", "macs-linear"):
            fit = profile_fit(space, configs, ms, kind)
            fits[(precision, kind)] = fit
            lines.append(row(f"{precision}, {'block-linear' if kind == 'learned' else kind}", fit.quality))
    shipped = fits[("int8", "learned")]
    atomic_write_json(args.model_out, {"precision": "int8", "dataset": Path(args.csv).name,
                                       "quality": shipped.quality, "latency_model": shipped.model.to_dict()})
    # The same subnets under the fp32 model: how far the fp32 numbers are from int8 ones.
    fp32_pred = fits[("fp32", "learned")].model.predict_ms(space, configs8)
    ratio = ms8 / fp32_pred
    command = "python benchmarks/int8_latency_model.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        MARKER.strip(),
        "",
        f"Written by `{command.strip()}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({cpu_model()}). Dataset: `assets/latency/cpu-1t-int8.csv`, {len(ms8)} subnets exported as int8 "
        "QDQ files and measured with ORT, 1 thread, batch 1 (command, date and conditions in "
        "assets/latency/README.md). Fitted with the profile protocol (`profile_fit`, the "
        "fp32 profiles' one: seeded 80/20 split, scored on the held-out subnets), next to the same fit of "
        f"the fp32 dataset (`cpu-1t.csv`, {len(ms32)} subnets):",
        "",
        *lines,
        "",
        f"Measured int8 latency against the fp32 model's prediction for the same subnets: ratio median "
        f"{float(np.median(ratio)):.2f} (range {ratio.min():.2f}-{ratio.max():.2f}); the fp32 model does "
        "not predict int8 latency, hence a model per precision. The fitted int8 block-linear model is "
        "`assets/latency/cpu-ort-1t-int8.model.json`; `load_profile(\"cpu-ort-1t\").for_precision(\"int8\")` "
        "carries it (and its quality above), and `specialize(..., precision=\"int8\")` searches with it.",
        "",
    ])
    out = Path(args.out)
    write_sections(out, section)
    print(section)


if __name__ == "__main__":
    main()
