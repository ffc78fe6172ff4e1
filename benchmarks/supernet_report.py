"""Accuracy of the trained supernet's subnets vs the same architectures trained from scratch.

Writes docs/supernet-report.md (or `--out`). Any family's supernet (docs/families.md): every
subnet is extracted, its BN statistics (if it has any) recalibrated on the bundled 2,000
training images, and evaluated on the 10k Fashion-MNIST test set; no fine-tuning. `--targets`
sets the accuracy targets (default: the CNN's, largest 92.0 %, smallest 88.0 %).

    python benchmarks/supernet_report.py --supernet runs/tiny-fmnist/supernet.pt \
        --log runs/tiny-fmnist/log.jsonl \
        --scratch large=largest=runs/tiny-fmnist/phase-00-full.pt \
        --scratch small=smallest=runs/scratch-smallest/supernet.pt \
        --scratch medium=random:278=runs/scratch-random-278/supernet.pt \
        --record-twins assets/supernets/tiny-fmnist/twins.json

A twin's accuracy does not depend on the supernet, and run folders are not kept: `--record-twins`
writes each twin measured from weights (config, correct / images, split, weights file, date) to a
JSON file, and `--twins FILE` reads such records for twins whose weights are gone. The report
says which twins were measured now and which come from a record, with its date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ofa_engine.devices.profile_kit import cpu_model  # noqa: E402
from ofa_engine import extract_calibrated, load_supernet  # noqa: E402
from ofa_engine.families import family_of  # noqa: E402
from ofa_engine.packages import load_package  # noqa: E402
from ofa_engine.datasets.images import load_split  # noqa: E402
from ofa_engine.runtime.evaluation import accuracy  # noqa: E402

TARGETS = {"largest": 0.920, "smallest": 0.880, "twin_gap": 0.005}




def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="tiny-fmnist", help="a supernet file or a package (bundled name or folder)")
    p.add_argument("--log", help="training log.jsonl of the progressive-shrinking run")
    p.add_argument("--scratch", action="append", default=[],
                   help="NAME=CONFIG=FILE: a from-scratch twin (supernet file trained on CONFIG only)")
    p.add_argument("--twins", help="JSON file of recorded twins (written by --record-twins) for those "
                                   "not given with --scratch")
    p.add_argument("--record-twins", help="write the twins measured from weights to this JSON file "
                                          "(kept: records of other twins in it)")
    p.add_argument("--random", type=int, default=20, help="number of random subnets (seeds 0..N-1)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default="docs/supernet-report.md")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--targets", default=None,
                   help="largest=A,smallest=B (accuracy fractions); default largest=0.92,smallest=0.88")
    p.add_argument("--discussion", default='docs/training.md, section "The bundled run"',
                   help="where the recipe and the targets are discussed (default: the CNN's, docs/training.md)")
    args = p.parse_args()
    if args.targets:
        for item in args.targets.split(","):
            key, _, value = item.partition("=")
            if key not in ("largest", "smallest") or not value:
                raise SystemExit(f"--targets {args.targets!r}: allowed: largest=A,smallest=B")
            TARGETS[key] = float(value)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    # A supernet file (training's supernet.pt), or a package: a bundled name or a folder.
    supernet = (load_supernet(args.supernet) if Path(args.supernet).is_file()
                else load_package(args.supernet).supernet)
    space = supernet.space
    family = family_of(space, fast=False)
    test = load_split(args.split)
    calib = load_split("calib")

    def evaluate(net, cfg) -> float:
        return accuracy(extract_calibrated(net, cfg, calib), test.images, test.labels, space)

    rows = [("largest", space.largest()), ("smallest", space.smallest())]
    rows += [(f"random:{seed}", space.sample(seed)) for seed in range(args.random)]
    results = []
    for name, cfg in rows:
        acc = evaluate(supernet, cfg)
        macs = family.analyze(cfg)["macs"]
        results.append((name, cfg, acc, macs))
        print(f"{name:12s} {macs / 1e6:6.2f} MMACs  acc {acc * 100:.2f}%", flush=True)

    twins, measured = [], []
    for spec in args.scratch:
        label, config_text, path = spec.split("=", 2)
        cfg = space.parse_config(config_text)
        ofa_acc = evaluate(supernet, cfg)
        scratch_acc = evaluate(load_supernet(path), cfg)
        twins.append((label, config_text, cfg, ofa_acc, scratch_acc, f"`{path}`"))
        measured.append(twin_record(label, config_text, cfg, scratch_acc, len(test), args.split, path))
        print(f"twin {label}: ofa {ofa_acc * 100:.2f}%  scratch {scratch_acc * 100:.2f}%", flush=True)
    given = {t[0] for t in twins}
    for record in (read_twin_records(args.twins, space, args.split, len(test)) if args.twins else []):
        if record["label"] in given:
            continue
        cfg = space.parse_config(record["config"])
        ofa_acc = evaluate(supernet, cfg)
        scratch_acc = record["correct"] / record["images"]
        twins.append((record["label"], record["config"], cfg, ofa_acc, scratch_acc,
                      f"recorded {record['measured']} (`{record['weights']}`, not kept)"))
        print(f"twin {record['label']}: ofa {ofa_acc * 100:.2f}%  scratch {scratch_acc * 100:.2f}% "
              f"(recorded {record['measured']})", flush=True)
    if args.record_twins and measured:
        write_twin_records(Path(args.record_twins), measured)

    log = [json.loads(line) for line in Path(args.log).read_text().splitlines()] if args.log else []
    write_report(args, space, family, results, twins, log, time.time() - t0)
    return 0


TWIN_FIELDS = ("label", "config", "split", "images", "correct", "weights", "measured")


def twin_record(label: str, config_text: str, cfg, acc: float, images: int, split: str, path: str) -> dict:
    return {"label": label, "config": config_text, "resolved_config": cfg.to_dict(), "split": split,
            "images": images, "correct": round(acc * images), "weights": str(path),
            "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}


def read_twin_records(path: str, space, split: str, images: int) -> list[dict]:
    """Records written by --record-twins; refused, naming the problem, if they do not fit this run."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))["twins"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--twins {path}: not a twin-record file ({type(exc).__name__}: {exc}); "
                         f"expected {{\"twins\": [{{{', '.join(TWIN_FIELDS)}}}, ...]}}")
    for r in records:
        missing = [f for f in TWIN_FIELDS if f not in r]
        if missing:
            raise SystemExit(f"--twins {path}: a record lacks {missing}; required: {list(TWIN_FIELDS)}")
        if r["split"] != split or r["images"] != images:
            raise SystemExit(f"--twins {path}: twin '{r['label']}' was measured on {r['images']} images of "
                             f"'{r['split']}', this report uses {images} of '{split}'")
        if "resolved_config" in r and space.parse_config(r["config"]).to_dict() != r["resolved_config"]:
            raise SystemExit(f"--twins {path}: twin '{r['label']}': config {r['config']} now resolves to "
                             f"another architecture than the one recorded")
    return records


def write_twin_records(path: Path, measured: list[dict]) -> None:
    records = json.loads(path.read_text(encoding="utf-8"))["twins"] if path.exists() else []
    labels = {r["label"] for r in measured}
    records = [r for r in records if r["label"] not in labels] + measured
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"twins": records}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"recorded {len(measured)} twin(s) in {path}")


def write_report(args, space, family, results, twins, log, seconds) -> None:
    by_name = {name: acc for name, _, acc, _ in results}
    all_met = (all(by_name[key] >= TARGETS[key] for key in ("largest", "smallest")) and bool(twins) and
               all(scratch - ofa <= TARGETS["twin_gap"] for _, _, _, ofa, scratch, _ in twins))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/supernet_report.py " + " ".join(sys.argv[1:])
    threads = torch.get_num_threads()
    lines = [
        f"# Supernet report: {space.name}",
        "",
        f"Produced by `{cmd}` on {now}, {cpu_model()} ({threads} torch thread{'s' if threads != 1 else ''}), "
        f"torch {torch.__version__}; the evaluation took {seconds:.0f} s.",
        "",
        f"Every subnet is extracted from the supernet, its BatchNorm statistics (if it has any) are recalibrated "
        f"on the bundled 2,000 training images (`assets/supernets/tiny-fmnist/calibration.npz`), and it is evaluated on the "
        f"{'10,000-image Fashion-MNIST test set' if args.split == 'test' else args.split + ' split'}. "
        f"No fine-tuning.",
        "",
        ("Every accuracy target is met; how the recipe got there" if all_met else
         "Why the targets are missed and what would close them") + f": {args.discussion}.",
        "",
        "## Targets",
        "",
        "| target | value | result |",
        "|---|---:|---|",
    ]
    for name, key in (("largest", "largest"), ("smallest", "smallest")):
        acc = by_name[name]
        ok = acc >= TARGETS[key]
        miss = "" if ok else f" (missed by {(TARGETS[key] - acc) * 100:.2f} points)"
        lines.append(f"| {name} subnet >= {TARGETS[key] * 100:.1f}% | {acc * 100:.2f}% | "
                     f"{'met' if ok else 'missed'}{miss} |")
    for label, _, _, ofa_acc, scratch_acc, _ in twins:
        gap = scratch_acc - ofa_acc
        ok = gap <= TARGETS["twin_gap"]
        lines.append(f"| {label}: OFA within 0.5 points of (or above) from-scratch | "
                     f"{ofa_acc * 100:.2f}% vs {scratch_acc * 100:.2f}% | "
                     f"{'met' if ok else 'missed'} ({-gap * 100:+.2f} points) |")
    lines += ["", "## Subnets of the supernet", "",
              "| subnet | MMACs | accuracy | config |", "|---|---:|---:|---|"]
    for name, cfg, acc, macs in results:
        lines.append(f"| {name} | {macs / 1e6:.2f} | {acc * 100:.2f}% | `{json.dumps(cfg.to_dict(), separators=(',', ':'))}` |")
    if twins:
        lines += ["", "## Extracted subnet vs the same architecture trained from scratch", "",
                  "The from-scratch twin is trained with the full-network phase of the recipe (same "
                  "epochs, learning-rate schedule, augmentation and per-batch resolution sampling) on "
                  "that one architecture. The largest subnet's twin is the full-network phase itself.",
                  "", "| subnet | config | MMACs | OFA (extracted) | from scratch | difference | twin weights |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for label, text, cfg, ofa_acc, scratch_acc, path in twins:
            lines.append(f"| {label} | `{text}` | {family.analyze(cfg)['macs'] / 1e6:.2f} | "
                         f"{ofa_acc * 100:.2f}% | {scratch_acc * 100:.2f}% | "
                         f"{(ofa_acc - scratch_acc) * 100:+.2f} | {path} |")
    if log:
        total = log[-1]["elapsed_s"]
        lines += ["", "## Training log", "",
                  f"Total training time: {total / 60:.1f} minutes (sum of the phases, from the log).",
                  "Accuracies here are on the first 2,000 holdout images, BN recalibrated.", "",
                  "| phase | epoch | loss | lr | largest | smallest | images/s | elapsed (min) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in log:
            lines.append(f"| {r['phase']} | {r['epoch']}/{r['epochs']} | {r['loss']:.3f} | {r['lr']:.4f} | "
                         f"{r.get('acc_largest', float('nan')) * 100:.2f}% | "
                         f"{r.get('acc_smallest', float('nan')) * 100:.2f}% | {r['images_per_s']:.0f} | "
                         f"{r['elapsed_s'] / 60:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
