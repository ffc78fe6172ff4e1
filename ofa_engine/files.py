"""Files a user or the engine writes and reads, done one way everywhere.

- Atomic writes: the data goes to a temporary file beside the target (random name, same
  folder, so `os.replace` is atomic), is flushed to disk, then replaces the target. A failure
  or an interrupt at any point leaves the previous file intact and no temporary file behind.
- Bounded reading of user JSON: a size cap and a nesting-depth cap, checked before parsing,
  so a hostile file can neither exhaust memory nor raise `RecursionError`.
- Name-or-path resolution: a bundled name, else an existing path, else an error naming both.

Limits are named constants here (docs/limits.md lists them and why).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "FileLimitError", "atomic_path", "atomic_write",
           "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_output_path", "loads_json",
           "read_json", "resolve_name_or_path"]

MAX_JSON_BYTES = 1 << 20      # configs, profiles, recipes, manifests: ours are a few KB
MAX_JSON_DEPTH = 32           # ours nest 4 levels at most


class FileLimitError(ValueError):
    """A user file over one of the limits above; the message names the file and the limit."""


# ---------------------------------------------------------------------- atomic writes
def check_output_path(path: str | os.PathLike, what: str = "output path") -> Path:
    """`path` as a `Path` when a file can be written there, else `ValueError` naming the path
    exactly as the user gave it (an empty name, a folder, a folder that does not exist)."""
    raw = os.fspath(path)
    target = Path(raw)
    if not raw.strip() or not target.name or target.name in (".", ".."):
        raise ValueError(f"{what} '{raw}' names no file; allowed: a file name such as model.onnx")
    if target.is_dir():
        raise ValueError(f"{what} '{raw}' is a folder; allowed: a file path (e.g. '{target / 'model.onnx'}')")
    if not target.parent.is_dir():
        raise ValueError(f"{what} '{raw}': folder '{target.parent}' does not exist")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path` through: yields it, then moves it over `path` when the
    block ends without an exception. For writers that want a path (torch.save, onnx.save)."""
    path = check_output_path(path)
    # Not mkstemp: its 0600 mode would survive os.replace; a random name is enough.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write `path` atomically with `write(binary_file)`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8, '\\n' line ends whatever the platform."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


# ---------------------------------------------------------------------- bounded JSON
def _depth_ok(text: str, max_depth: int) -> bool:
    """True when brackets outside strings nest at most `max_depth` deep (a linear scan, so a
    hostile file is refused before the recursive parser sees it)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads_json(text: str | bytes, what: str, *, max_bytes: int = MAX_JSON_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON from a user, or `ValueError` naming `what` and the limit or the syntax error."""
    if len(text) > max_bytes:
        raise FileLimitError(f"{what} is {len(text):,} bytes; the limit is {max_bytes:,} "
                             f"(MAX_JSON_BYTES)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "[" in text or "{" in text:
        if not _depth_ok(text, max_depth):
            raise FileLimitError(f"{what} nests deeper than {max_depth} levels (MAX_JSON_DEPTH)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def read_json(path: str | os.PathLike, what: str | None = None, *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read and parse a JSON file with the limits of `loads_json` (the size is checked before
    reading). `OSError` for a file that cannot be read, `ValueError` for its content."""
    path = Path(path)
    what = what or f"'{path}'"
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    if path.exists() and not path.is_file():   # a FIFO or a device would block or never end
        raise ValueError(f"{what} is not a regular file")
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        size = path.stat().st_size
        raise FileLimitError(f"{what} is {size:,} bytes; the limit is {max_bytes:,} (MAX_JSON_BYTES)")
    return loads_json(data, what, max_bytes=max_bytes, max_depth=max_depth)


# ---------------------------------------------------------------------- names and paths
def resolve_name_or_path(name_or_path: str | os.PathLike, bundled: Mapping[str, Path], what: str, *,
                         error: type[ValueError] = ValueError, readme: str = "assets/README.md") -> Path:
    """The file of a bundled name, else the given path if it exists; `error` (a ValueError)
    naming the bundled names otherwise. A bundled name whose file is missing is
    `FileNotFoundError` pointing at `readme`, which names the command that makes it."""
    key = os.fspath(name_or_path)
    if key in bundled:
        path = Path(bundled[key])
        if not path.exists():
            raise FileNotFoundError(f"bundled {what} {path} is missing; see {readme} for the command "
                                    f"that makes it")
        return path
    path = Path(key)
    if not key or not path.exists():
        raise error(f"{what} '{key}' is neither a bundled name ({', '.join(bundled) or 'none'}) "
                    f"nor an existing file")
    return path
