"""How ONNX Runtime's two ways of running an int8 (QDQ) file compare with the file's arithmetic.

    python benchmarks/int8_evaluation.py [--profile stm32f746] [--fraction 0.4]

Writes the int8 file that `specialize(profile, latency <= fraction of its predicted range,
"evolution", seed 0, precision "int8")` gives on the bundled tiny-fmnist package (the
bench_specialize int8-mcu case), then predicts the bundled test2k and 10k test images with:

- ORT's default session (DQ -> Conv -> Q fused into its integer kernels where it can);
- ORT with the QDQ as written (`make_session(..., fuse_qdq=False)`: what the engine reports);
- the file's arithmetic as ONNX defines it, computed without ORT (tests/helpers_qdq.py).

Prints, per image set: each way's accuracy, how many predictions differ from the reference
arithmetic, the largest logit difference, and each ORT session's time on one thread. docs/int8.md
("How an int8 file's accuracy is measured").
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ofa_engine import specialize  # noqa: E402
from ofa_engine.datasets.images import load_split  # noqa: E402
from ofa_engine.devices.profiles import load_profile  # noqa: E402
from ofa_engine.pipeline.specialize import load_resources  # noqa: E402
from ofa_engine.runtime.ort import make_session  # noqa: E402
from ofa_engine.runtime.preprocess import preprocess  # noqa: E402
from ofa_engine.search import budget_ranges  # noqa: E402
from tests.helpers_qdq import qdq_reference_logits  # noqa: E402

BATCH = 250


def logits(session, x: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = np.concatenate([session.run(None, {"input": x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)])
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="stm32f746")
    parser.add_argument("--fraction", type=float, default=0.4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    res = load_resources("tiny-fmnist")
    prof = load_profile(args.profile).for_precision("int8")
    if hasattr(prof, "for_space"):
        prof = prof.for_space(res.space)
    lat = budget_ranges(res.evaluator(prof)).get("latency_ms")
    budget = {} if lat is None else {"latency_ms": round(lat["min"] + args.fraction * (lat["max"] - lat["min"]), 6)}
    spec = specialize(args.profile, budget, "evolution", seed=0, precision="int8", supernet="tiny-fmnist")
    cfg = spec.report["config"]
    model = onnx.load_from_string(spec.onnx_bytes)
    print(f"{args.profile}, {budget}: config {cfg}, file {len(spec.onnx_bytes):,} bytes")
    print("| images | way | accuracy % | predictions differing from the reference | largest |logit difference| | seconds (1 thread) |")
    print("|---|---|---:|---:|---:|---:|")
    for split in ("test2k", "test"):
        images = load_split(split)
        x = preprocess(images.images, res.space, cfg["image_size"]).numpy()
        reference = np.concatenate([qdq_reference_logits(model, x[i:i + 500]) for i in range(0, len(x), 500)])
        ways = {"ORT default session": make_session(spec.onnx_bytes, threads=1),
                "ORT, QDQ as written": make_session(spec.onnx_bytes, threads=1, fuse_qdq=False)}
        rows = [("reference arithmetic (tests/helpers_qdq.py)", reference, None)]
        rows += [(name, *logits(session, x)) for name, session in ways.items()]
        for name, out, seconds in rows:
            accuracy = 100 * float((out.argmax(1) == images.labels).mean())
            differ = int((out.argmax(1) != reference.argmax(1)).sum())
            print(f"| {split} ({len(x):,}) | {name} | {accuracy:.2f} | {differ} | "
                  f"{float(np.abs(out - reference).max()):.3f} | {'' if seconds is None else f'{seconds:.2f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
