"""Our evolution against the official OFA `EvolutionFinder` on the official w1.0 space, same task.

    python benchmarks/bench_evolution_official.py [--runs 3] [--generations 100] [--macs-m 300]
                                                  [--out docs/search.md]

The issue's protocol: one process, one thread; the official MobileNetV3 w1.0 space (our preset
`ofa-mbv3-w1.0`: 25 resolutions 128..224, kernels 3/5/7, expands 3/4/6, depths 2/3/4), MACs
<= 300 M, population 100, 100 generations, each search driven by a 3x400 MLP accuracy predictor
with seeded random weights; median of `--runs` runs of each, the two alternating.

What makes it fair:

- One predictor function for both. The official `ofa.nas.accuracy_predictor.AccuracyPredictor`
  (3 hidden layers of 400, its own `MobileNetArchEncoder` encoding) gets seeded random weights;
  ours is the same network re-indexed onto our encoding (`official_predictor_arrays`, the
  package importer's: it computes the same function, checked here on 64 configs).
- One efficiency measure. The official finder counts MACs with its own `Mbv3FLOPsModel` (the
  OFA tutorial's), on an `OFAMobileNetV3` w1.0 supernet (random weights: only shapes matter);
  ours with `analyze`'s tables. The two counts are equal (checked here on 64 configs).
- The official predictor runs under `torch.no_grad()` (cheaper than the tutorial's call, so the
  ratio is not inflated by autograd bookkeeping).
- Each search is seeded (the official one with `random`, `numpy` and `torch` seeds, ours with
  `seed=`); the runs use seeds 0, 1, 2. The printed accuracies are the predictor's (random
  weights: the numbers only show that both searches climb the same function).

`ofa`'s efficiency predictor module imports `yaml` at the top for its latency tables, which the
FLOPs counter never reads: a stub stands in when PyYAML is not installed.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ofa_engine.devices.machine import cpu_model  # noqa: E402
from ofa_engine.families.mbv3.analytics import analyze  # noqa: E402
from ofa_engine.families.mbv3.official import official_predictor_arrays  # noqa: E402
from ofa_engine.families.mbv3.space import SearchSpace  # noqa: E402
from ofa_engine.predictors.accuracy import AccuracyPredictor  # noqa: E402
from ofa_engine.search import Evaluator, search  # noqa: E402

SPACE = "ofa-mbv3-w1.0"
SECTION = "### Evolution against the official EvolutionFinder"


def official_parts(space: SearchSpace, predictor_seed: int = 0):
    """(official EvolutionFinder class, its MACs model, its accuracy predictor) for `space`."""
    sys.modules.setdefault("yaml", types.ModuleType("yaml"))   # see the module docstring
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    from ofa.nas.accuracy_predictor import AccuracyPredictor as OfficialPredictor
    from ofa.nas.accuracy_predictor import MobileNetArchEncoder
    from ofa.nas.efficiency_predictor import Mbv3FLOPsModel
    from ofa.nas.search_algorithm import EvolutionFinder

    lists = dict(ks_list=list(space.kernel_sizes), depth_list=list(space.depths))
    net = OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=1.0, expand_ratio_list=list(space.expand_ratios),
                         **lists)
    encoder = MobileNetArchEncoder(image_size_list=list(space.resolutions), expand_list=list(space.expand_ratios),
                                   **lists)
    torch.manual_seed(predictor_seed)
    predictor = OfficialPredictor(encoder, device="cpu")
    return EvolutionFinder, Mbv3FLOPsModel(net), predictor


def run_official(finder_cls, efficiency, predictor, macs_m: float, generations: int, seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    finder = finder_cls(efficiency, predictor, population_size=100, max_time_budget=generations)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):   # it prints every 100 iterations
        start = time.perf_counter()
        _, (accuracy, arch, macs) = finder.run_evolution_search(macs_m, verbose=False)
        wall = time.perf_counter() - start
    return wall, accuracy, macs


def run_ours(evaluator: Evaluator, macs_m: float, generations: int, seed: int):
    start = time.perf_counter()
    result = search(evaluator, {"macs_m": macs_m}, "evolution", seed, population=100, generations=generations)
    wall = time.perf_counter() - start
    return wall, result.predicted["accuracy"], result.predicted["macs"] / 1e6


def check_same_task(space: SearchSpace, efficiency, predictor, ours: AccuracyPredictor) -> tuple[float, float]:
    """(largest |accuracy difference|, largest |MACs difference| in M) over 64 seeded configs."""
    configs = [space.sample(seed) for seed in range(64)]
    archs = [{k: v for k, v in c.to_dict().items() if k != "wid"} for c in configs]
    with torch.no_grad():
        theirs = predictor.predict_acc(archs).numpy().astype(np.float64)
    their_macs = np.array([efficiency.get_efficiency(a) for a in archs])
    return (float(np.abs(theirs - ours.predict(configs)).max()),
            float(np.abs(their_macs - analyze(space, configs)["macs"] / 1e6).max()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--macs-m", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=None, help="replace this section of a markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    space = SearchSpace.preset(SPACE)
    finder_cls, efficiency, predictor = official_parts(space)
    weights, biases, base_acc = official_predictor_arrays(predictor.state_dict(), space)
    ours = AccuracyPredictor(space, weights, biases, base_acc, 1.0)
    accuracy_gap, macs_gap = check_same_task(space, efficiency, predictor, ours)
    evaluator = Evaluator(space, None, ours)
    run_ours(evaluator, args.macs_m, 5, 0)   # warm: tables built, code paths loaded

    rows = {"official": [], "ours": []}
    for i in range(args.runs):
        rows["official"].append(run_official(finder_cls, efficiency, predictor, args.macs_m, args.generations, i))
        rows["ours"].append(run_ours(evaluator, args.macs_m, args.generations, i))
        print(f"run {i}: official {rows['official'][-1][0]:.3f} s, ours {rows['ours'][-1][0]:.4f} s", file=sys.stderr)

    median = {k: statistics.median(r[0] for r in v) for k, v in rows.items()}
    command = "python benchmarks/bench_evolution_official.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        SECTION, "",
        "```",
        f"command: {command.strip()}",
        f"machine: {cpu_model()}, 1 torch / BLAS thread",
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC",
        f"task: {SPACE}, MACs <= {args.macs_m:g} M, population 100, {args.generations} generations, "
        f"seeds 0..{args.runs - 1}; same predictor (largest gap {accuracy_gap:.1e}) and same MACs "
        f"(largest gap {macs_gap:.1e} M) on 64 configs",
        "```",
        "",
        "| search | wall s (median) | min | max | best predicted accuracy per seed | its MACs (M) |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("official", "official `EvolutionFinder`"), ("ours", "ours (`evolution`)")):
        walls = [r[0] for r in rows[name]]
        lines.append(f"| {label} | {median[name]:.4f} | {min(walls):.4f} | {max(walls):.4f} | "
                     + ", ".join(f"{r[1]:.4f}" for r in rows[name]) + " | "
                     + ", ".join(f"{r[2]:.1f}" for r in rows[name]) + " |")
    lines += ["", f"Ours is **{median['official'] / median['ours']:.1f}x** faster (median over median).", ""]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        replace_section(args.out, text)
    return 0


def replace_section(path: Path, text: str) -> None:
    """Put `text` in place of the section starting with `SECTION` (up to the next heading of the
    same or a higher level), or append it."""
    old = path.read_text(encoding="utf-8")
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        rest = old[start + len(SECTION):]
        ends = [i for i in (rest.find("\n## "), rest.find("\n### ")) if i >= 0]
        end = start + len(SECTION) + min(ends) + 1 if ends else len(old)
        new = old[:start] + text + ("\n" + old[end:] if end < len(old) else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
