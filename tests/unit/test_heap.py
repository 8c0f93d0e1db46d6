"""The operator returns freed heap to the OS (kubetrain.heap)."""

from __future__ import annotations

import os
import platform

import pytest

from kubetrain import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_freed_heap_goes_back_to_the_os_after_a_burst() -> None:
    burst = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]  # ~200 MiB of 1 KiB blocks
    keep = burst[-1]  # the last block stays, so the heap cannot simply shrink from its top
    del burst
    freed = rss()
    assert heap.trim()
    trimmed = rss()
    assert freed - trimmed > 100 * 2**20, (freed, trimmed)
    assert keep[-1] == (200_000 - 1) % 256
