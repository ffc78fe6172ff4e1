"""The int8 latency model of this machine (ORT CPU, 1 thread): fit and report, like the fp32 one.

    python benchmarks/int8_latency_model.py [--space tiny-fmnist] [--csv assets/latency/cpu-1t-int8.csv]
        [--fp32-csv assets/latency/cpu-1t.csv] [--model-out assets/latency/cpu-ort-1t-int8.model.json]
        [--out docs/int8.md]
    python benchmarks/int8_latency_model.py --space vit-fmnist      # the ViT's (its files: DATASETS)

Fits the int8 latency dataset with the profile protocol (`profile_fit`: seeded 80/20 split, ridge
by cross-validation on the training part, scored on the held-out part, refitted on all) for the
learned block-linear model and the MACs-linear baseline, does the same on the fp32 dataset of the
same space for comparison, writes the shipped int8 model (`--model-out`, the file
`devices.profiles.PRECISION_LATENCY_MODELS` names for the space's bundled profile) and replaces the
section "## int8 latency model" of `--out` (for another space than tiny-fmnist, the section
"## int8 latency model, <space>").
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
from ofa_engine.files import atomic_write_json  # noqa: E402
from ofa_engine.predictors.latency import profile_fit  # noqa: E402

MARKER = "## int8 latency model"
DEFAULT_SPACE = "tiny-fmnist"
# Space -> its bundled 1-thread profile and latency datasets (assets/latency/README.md): the
# defaults of --csv, --fp32-csv and --model-out.
DATASETS = {
    "tiny-fmnist": {"profile": "cpu-ort-1t", "int8": "cpu-1t-int8.csv", "fp32": "cpu-1t.csv"},
    "vit-fmnist": {"profile": "cpu-ort-1t-vit-fmnist", "int8": "vit-1t-int8.csv", "fp32": "vit-1t.csv"},
}
LATENCY_DIR = ROOT / "assets" / "latency"


def row(name: str, q: dict) -> str:
    return (f"| {name} | {q['n_train']} / {q['n_test']} | {100 * q['mape']:.1f} | {100 * q['within_10pct']:.0f} "
            f"| {q['kendall_tau']:.3f} | {q['rmse_ms']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=DEFAULT_SPACE, choices=sorted(DATASETS),
                        help=f"search space (default {DEFAULT_SPACE}); it picks the defaults of the files below")
    parser.add_argument("--csv", default=None, help="the int8 latency dataset (default: the space's, DATASETS)")
    parser.add_argument("--fp32-csv", default=None, help="the fp32 latency dataset (default: the space's)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "int8.md"))
    parser.add_argument("--model-out", default=None,
                        help="the fitted int8 model (default assets/latency/<profile>-int8.model.json)")
    args = parser.parse_args()
    space, files = args.space, DATASETS[args.space]
    csv8 = Path(args.csv or LATENCY_DIR / files["int8"])
    csv32 = Path(args.fp32_csv or LATENCY_DIR / files["fp32"])
    shipped_name = f"{files['profile']}-int8.model.json"   # the file PRECISION_LATENCY_MODELS names
    model_out = Path(args.model_out or LATENCY_DIR / shipped_name)
    marker = MARKER if space == DEFAULT_SPACE else f"{MARKER}, {space}"
    configs8, ms8, _ = read_latency_dataset(csv8, space)
    configs32, ms32, _ = read_latency_dataset(csv32, space)
    lines = ["| model | subnets train / held out | MAPE % | within ±10 % | Kendall τ | RMSE ms |",
             "|---|---:|---:|---:|---:|---:|"]
    fits = {}
    for precision, configs, ms in (("int8", configs8, ms8), ("fp32", configs32, ms32)):
        for kind in ("learned", "macs-linear"):
            fit = profile_fit(space, configs, ms, kind)
            fits[(precision, kind)] = fit
            lines.append(row(f"{precision}, {'block-linear' if kind == 'learned' else kind}", fit.quality))
    shipped = fits[("int8", "learned")]
    atomic_write_json(model_out, {"precision": "int8", "dataset": csv8.name,
                                       "quality": shipped.quality, "latency_model": shipped.model.to_dict()})
    # The same subnets under the fp32 model: how far the fp32 numbers are from int8 ones.
    fp32_pred = fits[("fp32", "learned")].model.predict_ms(space, configs8)
    ratio = ms8 / fp32_pred
    command = "python benchmarks/int8_latency_model.py " + " ".join(sys.argv[1:])
    section = "\n".join([
        marker,
        "",
        f"Written by `{command.strip()}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"({cpu_model()}). Dataset: `assets/latency/{csv8.name}`, {len(ms8)} subnets exported as int8 "
        "QDQ files and measured with ORT, 1 thread, batch 1 (command, date and conditions in "
        "assets/latency/README.md). Fitted with the profile protocol (`profile_fit`, the "
        "fp32 profiles' one: seeded 80/20 split, scored on the held-out subnets), next to the same fit of "
        f"the fp32 dataset (`{csv32.name}`, {len(ms32)} subnets):",
        "",
        *lines,
        "",
        f"Measured int8 latency against the fp32 model's prediction for the same subnets: ratio median "
        f"{float(np.median(ratio)):.2f} (range {ratio.min():.2f}-{ratio.max():.2f}); the fp32 model does "
        "not predict int8 latency, hence a model per precision. The fitted int8 block-linear model is "
        f"`assets/latency/{shipped_name}`; `load_profile(\"{files['profile']}\").for_precision(\"int8\")` "
        "carries it (and its quality above), and `specialize(..., precision=\"int8\")` searches with it.",
        "",
    ])
    out = Path(args.out)
    write_sections(out, section)
    print(section)


if __name__ == "__main__":
    main()
