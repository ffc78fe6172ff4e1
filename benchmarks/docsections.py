"""Benchmarks write their results into sections of markdown docs: one way to do it.

A doc is a preamble (its title and what comes before the first '## ' heading) and '## '
sections. `write_sections(path, text)` takes text of the same form and puts each of its parts in
place: a section whose heading the doc has is replaced, a new one goes before the heading
`before` (if the doc has it) or at the end, a preamble in the text replaces the doc's. Every
other section stays as it is, so several scripts can share one doc. The write is atomic.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from ofa_engine.files import atomic_write_text  # noqa: E402

__all__ = ["read_sections", "write_sections"]

PREAMBLE = ""


def read_sections(text: str) -> dict[str, str]:
    """{'' : preamble, '## heading': that section's text (heading line included)}, in order;
    each part without its trailing blank lines."""
    parts: dict[str, list[str]] = {PREAMBLE: []}
    key = PREAMBLE
    for line in text.splitlines():
        if line.startswith("## "):
            key = line.strip()
            parts[key] = []
        parts[key].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in parts.items() if k != PREAMBLE or "".join(v).strip()}


def write_sections(path: str | Path, text: str, *, before: str | None = None, title: str = "") -> None:
    """Put every part of `text` into the doc at `path` (see the module docstring); `title` is
    the preamble of a doc that does not exist yet."""
    path = Path(path)
    doc = read_sections(path.read_text(encoding="utf-8")) if path.exists() else ({PREAMBLE: title} if title else {})
    for key, body in read_sections(text).items():
        if key in doc or before not in doc:   # replaced in place, or appended
            doc[key] = body
        else:
            keys = list(doc)
            at = keys.index(before)
            doc = {k: doc[k] for k in keys[:at]} | {key: body} | {k: doc[k] for k in keys[at:]}
    if PREAMBLE in doc:   # the title comes first
        doc = {PREAMBLE: doc[PREAMBLE]} | {k: v for k, v in doc.items() if k != PREAMBLE}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n\n".join(doc.values()) + "\n")
