"""Files a user or the engine writes and reads, done one way everywhere.

- Atomic writes: the data goes to a temporary file beside the target (random name, same
  folder, so `os.replace` is atomic), is flushed to disk, then replaces the target. A failure
  or an interrupt at any point leaves the previous file intact and no temporary file behind.
  Files written as a set (a model and its report) are moved into place in the order given,
  with SIGTERM / Ctrl-C held back across the moves, so a stop leaves the old set or the new one.
  A process killed outright (SIGKILL, out of memory) cannot clean up: the next write of the
  same target removes the temporary files whose writer no longer runs.
- I/O errors of these writers name the target as the user gave it, never the temporary file.
- `exception_reason`: what a library's exception says, shortened to whole sentences, for the
  messages that explain why a user's file cannot be read.
- Bounded reading of user JSON: a size cap and a nesting-depth cap, checked before parsing,
  so a hostile file can neither exhaust memory nor raise `RecursionError`.
- Name-or-path resolution: a bundled name, else an existing path, else an error naming both.

Limits are named constants here (docs/limits.md lists them and why).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_REASON_CHARS", "FileLimitError", "OutputWriteError",
           "atomic_path", "atomic_paths", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "check_output_path", "exception_reason", "loads_json", "read_json",
           "remove_stale_temp_files", "resolve_name_or_path", "signals_held"]

MAX_JSON_BYTES = 1 << 20      # configs, profiles, recipes, manifests: ours are a few KB
MAX_JSON_DEPTH = 32           # ours nest 4 levels at most
MAX_REASON_CHARS = 300        # a library's explanation quoted in one of our messages


class FileLimitError(ValueError):
    """A user file over one of the limits above; the message names the file and the limit."""


# ---------------------------------------------------------------------- output paths, write errors
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


class OutputWriteError(OSError):
    """A file the user asked for could not be written: the message names that file (as the user
    gave it) and why, e.g. "cannot write 'out/model.onnx': No space left on device (the disk is
    full)"; `errno` is the system's. Nothing was replaced: an existing file is intact."""

    def __str__(self) -> str:
        return str(self.strerror)


# Why a write failed, in the user's terms, for the errors a full or protected disk gives.
_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "the folder is read-only or not yours",
    errno.EPERM: "the folder is read-only or not yours",
    errno.EFBIG: "the file is too large for this file system",
}
# Errors that a write raises without a file name (file.write, fsync): they are the target's.
_UNNAMED_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})


def _write_error(exc: OSError, given: str) -> OutputWriteError:
    reason = exc.strerror or str(exc)
    hint = _WRITE_HINTS.get(exc.errno or -1)
    return OutputWriteError(exc.errno, f"cannot write '{given}': {reason}" + (f" ({hint})" if hint else ""))


def _failed_write(exc: OSError, temps: list[Path]) -> int | None:
    """Which of `temps` the error `exc` came from writing: the one it names, or for a full or
    read-only disk (whose errors name no file) the last one begun; None for another error."""
    if exc.filename is not None:
        return next((i for i, t in enumerate(temps) if os.fspath(exc.filename) == os.fspath(t)), None)
    if exc.errno not in _UNNAMED_WRITE_ERRORS:
        return None
    return max((i for i, t in enumerate(temps) if os.path.lexists(t)), default=0)


# ---------------------------------------------------------------------- temporary files
# `.{target name}.{pid}-{8 hex}.tmp`, beside the target: the pid says whose it is.
def _temp_path(path: Path) -> Path:
    # Not mkstemp: its 0600 mode would survive os.replace; a random name is enough.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_running(pid: int) -> bool:
    """True unless process `pid` surely does not run here (our own pid runs; on doubt, it runs)."""
    if pid == os.getpid() or pid <= 0 or os.name != "posix":   # Windows' os.kill would end it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # PermissionError: another user's process
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of `path` left beside it (SIGKILL or the
    out-of-memory killer leave no chance to clean up): only names of our own pattern for this
    target (`.{name}.{pid}-{8 hex}.tmp`) whose process no longer runs, never a running writer's.
    Returns the files removed. Best effort: a file that cannot be removed is left."""
    path = Path(path)
    prefix = f".{path.name}."
    pattern = re.compile(re.escape(prefix) + r"(\d{1,10})-[0-9a-f]{8}\.tmp")
    removed: list[Path] = []
    try:
        with os.scandir(path.parent) as entries:
            candidates = [(e.path, int(m.group(1))) for e in entries if e.name.startswith(prefix)
                          and (m := pattern.fullmatch(e.name)) and e.is_file(follow_symlinks=False)]
    except OSError:
        return removed
    for file, pid in candidates:
        if _pid_running(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(file)
            removed.append(Path(file))
    return removed


# ---------------------------------------------------------------------- signals
_HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_held_depth = 0


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM and Ctrl-C back during the block: one that arrives is delivered when the
    block ends (its handler runs then, or its default action), so that moving a set of files
    into place is never cut in the middle.

    Python runs signal handlers in the main thread only, so only there can a signal interrupt
    the block; in another thread this does nothing. (Not `pthread_sigmask`: it blocks a signal
    for one thread only, and the kernel hands a process-wide SIGTERM to any other thread that
    does not block it, torch's and ONNX Runtime's included; Python would then run the handler in
    the main thread all the same.) A handler that Python did not install, or SIG_IGN, is left
    as it is."""
    global _held_depth
    if threading.current_thread() is not threading.main_thread() or _held_depth:
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous: dict[int, Any] = {}
    _held_depth += 1
    try:
        for sig in _HELD_SIGNALS:
            handler = signal.getsignal(sig)
            if handler is None or handler == signal.SIG_IGN:
                continue
            signal.signal(sig, hold)
            previous[sig] = handler
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _held_depth -= 1
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)   # its own handler now (Terminated, KeyboardInterrupt, or exit)


# ---------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Temporary paths to write `paths` through, one each: when the block ends without an
    exception they are flushed to disk and moved over their targets in the order given, with
    SIGTERM / Ctrl-C held back across the moves (`signals_held`), so a stop leaves all the old
    files or all the new ones. Put the file that vouches for the others (a report) last: it
    then never stands beside files older than itself. On an exception nothing is replaced and
    the temporary files are removed; stale ones of killed earlier writers of the same targets
    are removed first (`remove_stale_temp_files`). An I/O error writing a target is raised as
    `OutputWriteError` naming the target as given."""
    given = [os.fspath(p) for p in paths]
    targets = [check_output_path(p) for p in paths]
    for target in targets:
        remove_stale_temp_files(target)
    temps = [_temp_path(target) for target in targets]
    current = 0   # the target whose write failed, for the message
    try:
        try:
            yield tuple(temps)
        except OSError as exc:
            failed = _failed_write(exc, temps)
            if failed is None:
                raise
            raise _write_error(exc, given[failed]) from exc
        try:
            for current, tmp in enumerate(temps):
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            with signals_held():
                for current, (tmp, target) in enumerate(zip(temps, targets)):
                    os.replace(tmp, target)
        except OSError as exc:
            raise _write_error(exc, given[current]) from exc
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write `path` through: yields it, then moves it over `path` when the
    block ends without an exception (`atomic_paths` of one file). For writers that want a path
    (torch.save, onnx.save)."""
    with atomic_paths(path) as (tmp,):
        yield tmp


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


# ---------------------------------------------------------------------- library messages
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def exception_reason(exc: BaseException, limit: int = MAX_REASON_CHARS) -> str:
    """What `exc` says, for quoting in a one-line message: its first line (terminal colour codes
    removed), as many whole sentences of it as fit in `limit` characters; a first sentence
    longer than that is cut at a word and ends in '...'. "(no message)" when it says nothing.
    (torch's messages run to several long sentences of advice; a plain slice cut them
    mid-sentence.)"""
    text = _ANSI_ESCAPE.sub("", str(exc)).strip()
    line = " ".join((text.splitlines() or [""])[0].split())
    if not line:
        return "(no message)"
    if len(line) <= limit:
        return line
    ends = [m.end() for m in _SENTENCE_END.finditer(line, 0, limit)]
    if ends:
        return line[:ends[-1]]
    cut = line.rfind(" ", 0, limit - 3)
    return line[:cut if cut > 0 else limit - 3].rstrip(" ,;:") + "..."


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
