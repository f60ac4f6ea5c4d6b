"""glibc malloc settings for the long-running server (`avsearch serve`). Imports nothing heavy: it must run
before torch, LanceDB or any thread has allocated.

Why: glibc gives each thread that allocates its own malloc arena, up to 8 per core, and an arena keeps
the memory its thread freed (reused by that arena only, rarely returned to the system). The server answers
on a pool of up to 40 worker threads (plus LanceDB's and torch's), and a query that runs an encoder frees
hundreds of MB of activations in whichever thread ran it, so RSS climbed for minutes while arena after
arena filled up. benchmarks/serve_soak.py (8 clients, mixed load, 10 minutes, 2 cores; CLIP ViT-B/32 +
CLAP HTSAT, 20k rows): glibc's default (16 arenas here) 3.08 GB after warm-up -> 3.34 GB at the end;
capped at 2, 2.65 -> 2.69 GB, no slower. Nothing live grows: after malloc_trim(0) the memory in use was
2.34 GB after warm-up and 2.31 GB at the end (2.38 GB with 16 arenas, whose trim gave back 870 MB).
"""

from __future__ import annotations

import ctypes
import os
import sys

SERVER_ARENAS = 2
_M_ARENA_MAX = -8  # <malloc.h>


def limit_malloc_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` (mallopt M_ARENA_MAX); whether the cap was set.

    Effective for the arenas made from now on (glibc fixes its limit once it has more than 8 arenas), so
    call it first thing in the process. Nothing is done off glibc, or where the user chose a value
    (MALLOC_ARENA_MAX, or arena_max in GLIBC_TUNABLES): setting MALLOC_ARENA_MAX=0 gives glibc's default
    (8 per core) back.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False  # musl and others: their own allocator, no M_ARENA_MAX
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))
