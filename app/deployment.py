"""The "deploy everywhere" results as data: table rows and the zip (no Streamlit here).

A deployment is a list of entries, one per device: {"profile", "device", "precision",
"budget_ms" (the user's), "searched_ms" (the budget searched: less a safety margin on a measured
profile), "report" (the engine's specialize report, None on failure), "onnx_bytes", "error"},
optionally "latency_source" (whose latency, in full: the manifest) and "device_short" /
"latency_source_short" (the same in a few words: the table).
"""

from __future__ import annotations

import io
import json
import zipfile

from typing import Any, Callable, Mapping

from app import format as fmt
from app.budgets import identical_configs, latency_verdict, shared_deadlines
from app.layers import subnet_summary

__all__ = ["file_name", "result_rows", "deployment_zip", "default_budgets", "budget_refusals",
           "coincidence_notes", "VERDICT_WORDS"]

# How a measured latency reads against its budget (app.budgets.latency_verdict), as Specialize's cards say it.
VERDICT_WORDS = {"within": "", "noisy": " (noisy: its spread straddles the budget)",
                 "over": " (over budget, beyond the runs' spread)"}


def default_budgets(ranges: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Each profile's default latency budget on Deploy everywhere, from its `budget_ranges`:
    one deadline per group of devices whose ranges overlap (`app.budgets.shared_deadlines`),
    so that faster devices get larger subnets; None for a profile without a latency model."""
    latency = {n: (float(r["latency_ms"]["min"]), float(r["latency_ms"]["max"]))
               for n, r in ranges.items() if "latency_ms" in r}
    shared = shared_deadlines(latency)
    return {n: shared.get(n) for n in ranges}


def budget_refusals(rows: list[Mapping[str, Any]], check: Callable[[str, float | None, str], str | None]
                    ) -> dict[str, str]:
    """{profile: reason} for each row whose budget or precision cannot be met, before any work:
    `check(profile, budget_ms, precision)` returns the engine's reason (the profile's precisions,
    `check_budget` with the device's memory) or None."""
    out = {}
    for row in rows:
        budget = row.get("budget_ms")
        if budget is not None and not budget > 0:
            out[row["profile"]] = f"the latency budget is {budget:g} ms; allowed: above 0 ms"
            continue
        reason = check(row["profile"], budget, row.get("precision"))
        if reason is not None:
            out[row["profile"]] = reason
    return out


def file_name(entry: dict) -> str:
    return f"{entry['profile']}-{entry['precision']}.onnx"


def result_rows(deployment: list[dict], space) -> list[dict]:
    """One row per device, every number formatted with its unit (app.format)."""
    out = []
    for e in deployment:
        if e["report"] is None:
            out.append({"profile": e["profile"], "device": e.get("device_short", e["device"]),
                        "subnet": "none: " + e["error"]})
            continue
        r, cfg = e["report"], e["report"]["config"]
        measured, predicted = r["measured"], r["predicted"]
        latency = "not measured here"
        if measured.get("latency_ms") is not None:
            verdict = latency_verdict(measured["latency_ms"], measured.get("latency_iqr_ms"), e["budget_ms"])
            latency = fmt.latency_spread(measured["latency_ms"], measured.get("latency_iqr_ms")) + VERDICT_WORDS[verdict]
        searched = e.get("searched_ms")
        out.append({
            "profile": e["profile"], "device": e.get("device_short", e["device"]), "precision": e["precision"],
            "subnet": subnet_summary(space, cfg),
            "accuracy": fmt.percent(measured["accuracy"]),
            "latency budget": "none" if e["budget_ms"] is None else fmt.budget(e["budget_ms"], "ms") + (
                f" (searched under {fmt.budget(float(f'{searched:.4g}'), 'ms')})" if searched is not None
                and searched < e["budget_ms"] * (1 - 1e-6) else ""),
            "latency predicted": fmt.quantity(predicted.get("latency_ms"), "ms"),
            **({"latency from": e.get("latency_source_short", e["latency_source"])} if e.get("latency_source") else {}),
            "latency measured": latency,
            "peak memory": fmt.memory_kb(measured["peak_memory_kb"]),
            "Flash": fmt.memory_kb(measured["flash_kb"]),
            "MACs": fmt.quantity(measured["macs"] / 1e6, "M"),
            "file": f"{file_name(e)} ({fmt.memory_bytes(len(e['onnx_bytes']))})"})
    return out


def deployment_zip(deployment: list[dict], space, supernet: str) -> bytes:
    """Every ONNX file and manifest.json (per device: file name, config, budget, predicted and
    measured numbers, as the engine's report gives them)."""
    manifest = {"format": "ofa-engine/deployment", "supernet": supernet, "space": space.name,
                "devices": [{"profile": e["profile"], "device": e["device"], "file": file_name(e),
                             "precision": e["precision"], "latency_budget_ms": e["budget_ms"],
                             **({"latency_source": e["latency_source"]} if e.get("latency_source") else {}),
                             "config": e["report"]["config"], "predicted": e["report"]["predicted"],
                             "measured": e["report"]["measured"], "onnx_bytes": len(e["onnx_bytes"])}
                            for e in deployment if e["report"] is not None]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        for e in deployment:
            if e["report"] is not None:
                z.writestr(file_name(e), e["onnx_bytes"])
    return buffer.getvalue()


def coincidence_notes(deployment: list[dict], space) -> list[str]:
    """One sentence per group of devices that got the same subnet, saying why: what bounded
    the subnet on each (its latency budget, or the device's memory, or neither: the most
    accurate subnet of the space), so that the page never leaves it unexplained."""
    ok = {e["profile"]: e for e in deployment if e["report"] is not None}
    notes = []
    for names in identical_configs((n, e["report"]["config"]) for n, e in ok.items()):
        bounds = {n: _binding_bound(ok[n]["report"]) for n in names}
        cfg = ok[names[0]]["report"]["config"]
        subnet = subnet_summary(space, cfg)
        who = ", ".join(names[:-1]) + f" and {names[-1]}"
        kinds = set(bounds.values())
        if kinds == {"latency"}:
            why = ("on each the latency budget is what limits the subnet, and their latency models rank the "
                   "subnets alike (an analytical model is the MACs divided by the clock), so budgets at the same "
                   "place in each device's range pick the same subnet; move one device's budget to tell them apart")
        elif kinds <= {"memory"}:
            why = ("on each the device's memory is what limits the subnet (the latency budget leaves room), and "
                   "this is the most accurate subnet found that fits it")
        elif kinds == {"none"}:
            why = "no bound limits it on any of them: it is the most accurate subnet the search found in the whole space"
        else:
            why = "it is the most accurate subnet found under each device's own bounds (" + "; ".join(
                f"{n}: {'its ' + b if b != 'none' else 'no'} bound" for n, b in bounds.items()) + ")"
        notes.append(f"{who} got the same subnet ({subnet}): {why}.")
    return notes


def _binding_bound(report: Mapping[str, Any], slack: float = 0.97) -> str:
    """'latency', 'memory' or 'none': the bound the chosen subnet comes closest to (within
    `slack` of it), latency first."""
    predicted, bounds = report["predicted"], report.get("searched_constraints") or report.get("effective_constraints") or {}
    if bounds.get("latency_ms") and (predicted.get("latency_ms") or 0) >= slack * bounds["latency_ms"]:
        return "latency"
    for field in ("peak_memory_kb", "flash_kb"):
        if bounds.get(field) and (predicted.get(field) or 0) >= slack * bounds[field]:
            return "memory"
    return "none"
