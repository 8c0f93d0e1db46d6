"""What the checkpointer needs from a process group, and how ranks write their state.

Kept as small protocols so the core runs (and is tested) without torch: a single process needs
no collectives, and `PickleCodec` stores plain Python state. torch variants live in `torch.py`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
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


@dataclass
class PerRank:
    """A state entry whose value differs between ranks: an RNG state, a sampler's position.

    Per-rank codecs (pickle, `torch.save`) keep every rank's values anyway. DCP assumes a plain
    value or tensor is the same on every rank and writes one copy, so without this wrapper a
    resume hands rank 0's value to every rank; wrapped, each rank saves and loads its own. Such
    an entry cannot be resharded: a restore into another world size refuses it, or leaves it as
    it is with `restore(state, per_rank_on_resize="keep")`. `value` is replaced on load unless it
    has `load_state_dict`.
    """

    value: Any


def _plain(value: Any) -> Any:
    return value.state_dict() if hasattr(value, "state_dict") else value


def snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state_dict()` of every stateful value (modules, optimizers, samplers); others as they are."""
    return {k: _plain(v.value if isinstance(v, PerRank) else v) for k, v in state.items()}


def load_value(state: MutableMapping[str, Any], key: str, loaded: Any) -> None:
    """Put a loaded value into `state[key]`: through `load_state_dict` where there is one."""
    current = state[key]
    target = current.value if isinstance(current, PerRank) else current
    if hasattr(target, "load_state_dict"):
        target.load_state_dict(loaded)
    elif isinstance(current, PerRank):
        current.value = loaded
    else:
        state[key] = loaded


def restore_into(state: MutableMapping[str, Any], loaded: Mapping[str, Any]) -> None:
    missing = sorted(set(state) - set(loaded))
    if missing:
        raise KeyError(
            f"checkpoint has no entries {missing}; it holds {sorted(loaded)}: "
            "restore with the same state keys the job saved, or start without a checkpoint"
        )
    for key in state:
        load_value(state, key, loaded[key])


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
