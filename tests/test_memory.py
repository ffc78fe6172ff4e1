"""The allocator setting the engine's passes rely on (runtime/memory.py): a freed large block is
used again instead of being faulted in anew, and the variable that turns it off."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Allocate, touch and free a 48 MB block (over glibc's largest automatic mmap threshold, 32 MB)
# twice, after keep_freed_memory(); print what it returned and the page faults of the second
# round.
_PROBE = """
import ctypes, ctypes.util, resource
from ofa_engine.runtime.memory import keep_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
kept = keep_freed_memory()
size = 48 * 1024 * 1024
def round_trip():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), **env}).stdout.split()
    return out[0] == "True", int(out[1])


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or "libc" not in str(ctypes.util.find_library("c")),
                           reason="glibc's thresholds")


@glibc
def test_a_freed_large_block_is_used_again_without_page_faults():
    kept, faults = _probe()
    assert kept
    assert faults < 100          # a 48 MB block is 12,288 pages of 4 KB


@glibc
def test_the_variable_leaves_the_allocator_as_it_is():
    kept, faults = _probe(OFA_KEEP_FREED_MEMORY="0")
    assert not kept
    assert faults > 6000         # glibc's default: the block went back to the kernel
