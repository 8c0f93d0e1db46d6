"""A checkpoint writer that saves forever, for the torn-write test to SIGKILL at random moments.

Each checkpoint holds four files whose bytes are a pure function of (step, index), so a reader
can verify content, not just sizes. Runs with `python -S`: the runtime core needs only stdlib.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from kubetrain.runtime import Checkpointer, PosixTier, discover
from kubetrain.runtime.posix import write_durably

PARTS = 4


def pattern(step: int, index: int) -> bytes:
    size = 512 * (1 + (step * 7 + index * 13) % 61)
    unit = f"{step}:{index};".encode()
    return (unit * (size // len(unit) + 1))[:size]


class PatternCodec:
    name = "pattern"
    needs_same_world_size = True

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        for index in range(PARTS):
            write_durably(directory / f"part-{index}.bin", pattern(state["step"], index))

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        raise NotImplementedError


def main() -> None:
    root = sys.argv[1]
    found = discover(PosixTier(root))
    step = found.step if found else 0
    ckpt = Checkpointer(root, job="torn", keep=3, codec=PatternCodec())
    print("ready", flush=True)
    while True:
        step += 1
        ckpt.save(step, {"step": step})


if __name__ == "__main__":
    main()
