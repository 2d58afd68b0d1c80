"""glibc's malloc told, once per process, to keep the memory a forward pass frees for the next.

By default glibc gives each block over 32 MB (a batch's activations: 77 MB for one of Lite0's
layers at batch 16) its own mmap and hands it back to the kernel when it is freed, so every
forward pass faults its activations in again, a page at a time, zeroed: about 54,000 page
faults a pass of Lite0 at batch 16, 11.4 ms an image against 8.5 ms without them (2 cores,
the pass on a thread of its own as in `ptcli serve`). Torch has no caching allocator on the
CPU. One arena (every thread's blocks in the same heap, so a freed block is there for the
next thread that asks), no mmap, and a heap kept up to TRIM_THRESHOLD free bytes reuse it.

The cost: a process keeps the memory its largest pass needed (up to TRIM_THRESHOLD more,
unused, at the heap's top), as torch's CUDA allocator does. PTCLI_MALLOC=system leaves glibc's
defaults, and so does a GLIBC_TUNABLES that sets malloc's own."""

from __future__ import annotations

import os
import sys

# mallopt's parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
#: Free bytes at the heap's top that the process keeps before it gives them back.
TRIM_THRESHOLD = 1 << 30


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):  # not a name this libc knows: musl
        return False


def reuse_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory rather than return it (see the module); whether
    it did. Call it first thing in a process, before its threads allocate: an arena a thread
    already has stays its own."""
    if os.environ.get("PTCLI_MALLOC", "").lower() == "system" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if not _glibc():
        return False
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Each returns 1 when glibc took the value; all three, or the others alone would not pay.
    return bool(mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
