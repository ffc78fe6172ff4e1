"""What the operator of a machine allows: read once from the environment, never from a user file.

A device profile says how a subnet is measured (ONNX Runtime threads, batch size). When the
engine measures on this machine (a profile with `measure_locally`, in `specialize` or in the
app), the profile's values must stay within these limits, so that a profile uploaded by a
visitor cannot make a server spawn a million threads or allocate a huge batch:

- `OFA_MAX_THREADS`: most ONNX Runtime intra-op threads one measurement may use
  (default: the machine's CPU count);
- `OFA_MAX_BATCH_SIZE`: largest batch one measurement may run (default 256, the profile
  schema's own cap `devices.profile_schema.MAX_BATCH_SIZE`; a larger value is lowered to it).

A profile above a limit is refused with a message naming the profile's field, its value, the
limit and the variable that sets it (docs/limits.md).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

__all__ = ["OperatorLimits", "operator_limits", "check_local_measurement", "MAX_THREADS_ENV",
           "MAX_BATCH_SIZE_ENV", "DEFAULT_MAX_BATCH_SIZE"]

MAX_THREADS_ENV = "OFA_MAX_THREADS"
MAX_BATCH_SIZE_ENV = "OFA_MAX_BATCH_SIZE"
DEFAULT_MAX_BATCH_SIZE = 256   # == devices.profile_schema.MAX_BATCH_SIZE (a test checks it)


@dataclass(frozen=True)
class OperatorLimits:
    max_threads: int
    max_batch_size: int


def _read_positive(name: str, default: int, high: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable {name} = {raw!r}; allowed: an integer >= 1")
    return min(int(raw), high) if high is not None else int(raw)


@functools.lru_cache(maxsize=1)
def operator_limits() -> OperatorLimits:
    """The limits of this process, read from the environment on first use (cached; tests call
    `operator_limits.cache_clear()` after changing the variables)."""
    return OperatorLimits(
        max_threads=_read_positive(MAX_THREADS_ENV, os.cpu_count() or 1),
        max_batch_size=_read_positive(MAX_BATCH_SIZE_ENV, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE))


def check_local_measurement(threads: int, batch_size: int, what: str = "profile") -> None:
    """`ValueError` when measuring here with `threads` / `batch_size` would go past the
    operator's limits; names `what`, the field, the value, the limit and its variable."""
    limits = operator_limits()
    for field, value, limit, env in (("threads", threads, limits.max_threads, MAX_THREADS_ENV),
                                     ("batch_size", batch_size, limits.max_batch_size, MAX_BATCH_SIZE_ENV)):
        if value > limit:
            raise ValueError(f"{what}: field '{field}' = {value} is above what this machine allows for "
                             f"a local measurement; allowed: at most {limit} (operator limit {env})")
