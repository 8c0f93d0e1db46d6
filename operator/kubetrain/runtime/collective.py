"""What the checkpointer needs from a process group, and how ranks write their state.

Kept as small protocols so the core runs (and is tested) without torch: a single process needs
no collectives, and `PickleCodec` stores plain Python state. torch variants live in `torch.py`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Protocol


class Collective(Protocol):
    rank: int
    world_size: int

    def max_int(self, value: int) -> int:
        """All-reduce(MAX) so every rank takes the same decision at the same step."""
        ...

    def barrier(self) -> None: ...

    def broadcast_str(self, value: str | None) -> str:
        """Rank 0's `value` on every rank."""
        ...


class SingleProcess:
    rank = 0
    world_size = 1

    def max_int(self, value: int) -> int:
        return value

    def barrier(self) -> None:
        return None

    def broadcast_str(self, value: str | None) -> str:
        if value is None:
            raise ValueError("rank 0 must provide the value to broadcast")
        return value


class Codec(Protocol):
    """How ranks write their part of a checkpoint into a fresh data directory and read it back."""

    name: str
    needs_same_world_size: bool

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        """Write this rank's files under `directory`, durably (fsync) before returning."""
        ...

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        """Load in place: stateful values via `load_state_dict`, plain values replaced in `state`."""
        ...


def snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state_dict()` of every stateful value (modules, optimizers, samplers); others as they are."""
    return {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}


def restore_into(state: MutableMapping[str, Any], loaded: Mapping[str, Any]) -> None:
    missing = sorted(set(state) - set(loaded))
    if missing:
        raise KeyError(
            f"checkpoint has no entries {missing}; it holds {sorted(loaded)}: "
            "restore with the same state keys the job saved, or start without a checkpoint"
        )
    for key, current in state.items():
        if hasattr(current, "load_state_dict"):
            current.load_state_dict(loaded[key])
        else:
            state[key] = loaded[key]


def rank_file(directory: Path, rank: int, suffix: str) -> Path:
    return directory / f"rank-{rank:05d}{suffix}"


def write_bytes_durably(path: Path, payload: bytes | memoryview) -> None:
    """One file from memory in 8 MiB writes, then fsync (the data directory is fsynced later)."""
    view = memoryview(payload)
    with open(path, "wb", buffering=0) as fh:
        for offset in range(0, len(view), 8 << 20):
            fh.write(view[offset : offset + (8 << 20)])
        os.fsync(fh.fileno())


class PickleCodec:
    """Per-rank pickle files: for torch-free training code and for tests of the core."""

    name = "pickle"
    needs_same_world_size = True

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        with open(rank_file(directory, rank, ".pkl"), "wb") as fh:
            pickle.dump(snapshot(state), fh, protocol=pickle.HIGHEST_PROTOCOL)  # streamed: no copy
            fh.flush()
            os.fsync(fh.fileno())

    def stage(self, state: Mapping[str, Any], rank: int) -> bytes:
        """For background saves: the pickled bytes are the private copy."""
        return pickle.dumps(snapshot(state), protocol=pickle.HIGHEST_PROTOCOL)

    def write(self, directory: Path, staged: bytes, rank: int) -> None:
        write_bytes_durably(rank_file(directory, rank, ".pkl"), staged)

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        # Checkpoints are written by this job into its own storage: trusted input.
        loaded = pickle.loads(rank_file(directory, rank, ".pkl").read_bytes())
        restore_into(state, loaded)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None
