"""The "deploy everywhere" results as data: table rows and the zip (no Streamlit here).

A deployment is a list of entries, one per device: {"profile", "device", "precision",
"budget_ms", "report" (the engine's specialize report, None on failure), "onnx_bytes", "error"},
optionally "latency_source" (whose latency, in full: the manifest) and "device_short" /
"latency_source_short" (the same in a few words: the table).
"""

from __future__ import annotations

import io
import json
import zipfile

from app import format as fmt

__all__ = ["file_name", "result_rows", "deployment_zip"]


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
        latency = (fmt.latency_spread(measured["latency_ms"], measured.get("latency_iqr_ms"))
                   if measured.get("latency_ms") is not None else "not measured here")
        out.append({
            "profile": e["profile"], "device": e.get("device_short", e["device"]), "precision": e["precision"],
            "subnet": f"width x{space.width_mults[cfg['wid']]}, {cfg['image_size']} px, depths {cfg['d']}",
            "accuracy": fmt.percent(measured["accuracy"]),
            "latency budget": "none" if e["budget_ms"] is None else fmt.budget(e["budget_ms"], "ms"),
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
