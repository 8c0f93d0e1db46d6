"""Give the operator's freed heap back to the OS after bursts.

A thousand jobs submitted at once make a burst: kopf opens a connection per job for its finalizer
patch (TLS buffers), and every gang's manifests and responses pass through the heap. glibc keeps
what Python frees in its arenas, so the resident size stayed at the burst's high-water mark: 44
MiB above the live heap at 1,000 jobs (issue 14), which a memory limit counts as used.
`malloc_trim(0)` returns free pages of every arena; it takes milliseconds, once a minute. A libc
without it (musl) keeps its own policy and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 60.0


def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return the heap's free pages to the OS; False where libc cannot. (No gc.collect() here:
    a full collection of a million objects would stall the event loop for a spot notice.)"""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


async def keep_trimmed(interval: float = TRIM_INTERVAL_SECONDS) -> None:
    """Trim every `interval` seconds until cancelled."""
    if _TRIM is None:
        log.debug("no malloc_trim in this libc: the heap is left to its own policy")
        return
    while True:
        await asyncio.sleep(interval)
        trim()
