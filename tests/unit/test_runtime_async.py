"""Background periodic saves: the commit waits for every write, emergencies wait or supersede.

A codec whose writes block on a gate the test opens makes "still writing" a state the test
controls instead of a race it hopes to win.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from kubetrain.runtime import Checkpointer, PosixTier, StopLevel, discover
from kubetrain.runtime.collective import rank_file, restore_into, write_bytes_durably
from kubetrain.runtime.manifest import parse_name


class GatedCodec:
    """Pickle codec whose background writes wait for `gate` (sync saves never do)."""

    name = "gated"
    needs_same_world_size = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.fail = False
        self.started: list[Path] = []

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        write_bytes_durably(rank_file(directory, rank, ".pkl"), self.stage(state, rank))

    def stage(self, state: Mapping[str, Any], rank: int) -> bytes:
        return pickle.dumps(dict(state))

    def write(self, directory: Path, staged: bytes, rank: int) -> None:
        self.started.append(directory)
        self.gate.wait(30)
        if self.fail:
            raise OSError("disk full")
        write_bytes_durably(rank_file(directory, rank, ".pkl"), staged)

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        restore_into(state, pickle.loads(rank_file(directory, rank, ".pkl").read_bytes()))


def committed(root: Path) -> list[tuple[int, str]]:
    """(step, kind) of every manifest, oldest first."""
    out = []
    for path in sorted((root / "manifests").glob("step-*.json")):
        doc = json.loads(path.read_text())
        out.append((doc["step"], doc["kind"]))
    return out


def data_dirs(root: Path) -> list[int]:
    return sorted(p[0] for d in (root / "data").iterdir() if (p := parse_name(d.name)))


def make(root: Path, **kwargs: Any) -> tuple[Checkpointer, GatedCodec]:
    codec = GatedCodec()
    kwargs.setdefault("every_steps", 4)
    return Checkpointer(root, codec=codec, exit_on_emergency=False, keep=5, **kwargs), codec


def test_periodic_save_returns_before_the_write_and_commits_at_a_later_step(
    tmp_path: Path,
) -> None:
    ckpt, codec = make(tmp_path)
    state = {"x": 0}
    for step in range(1, 5):
        state["x"] = step
        ckpt.step(step, state)
    assert ckpt.inflight is not None and ckpt.inflight.manifest.step == 4
    assert committed(tmp_path) == []  # data directory exists, no manifest: not a checkpoint
    assert data_dirs(tmp_path) == [4] and discover(PosixTier(tmp_path)) is None
    state["x"] = 999  # training goes on: the staged copy is what gets written
    ckpt.step(5, state)
    assert committed(tmp_path) == []  # still writing
    codec.gate.set()
    assert ckpt.inflight.wait(30) == 0
    ckpt.step(6, state)  # the next step boundary commits it
    assert ckpt.inflight is None and committed(tmp_path) == [(4, "periodic")]
    restored: dict[str, Any] = {"x": None}
    assert Checkpointer(tmp_path, codec=GatedCodec()).restore(restored) == 4
    assert restored == {"x": 4}
    assert ckpt.last_save_seconds is not None and ckpt.last_stall_seconds is not None


def test_next_periodic_save_waits_for_the_one_in_flight(tmp_path: Path) -> None:
    ckpt, codec = make(tmp_path)
    for step in range(1, 8):
        ckpt.step(step, {"x": step})
    assert ckpt.inflight is not None and committed(tmp_path) == []
    threading.Timer(0.2, codec.gate.set).start()  # storage catches up while step 8 waits
    ckpt.step(8, {"x": 8})
    assert committed(tmp_path) == [(4, "periodic")]  # committed before step 8 began
    assert ckpt.inflight is not None and ckpt.inflight.manifest.step == 8
    assert ckpt.last is not None and ckpt.inflight.manifest.parent == ckpt.last.name
    ckpt.close()  # waits for and commits the last one
    assert committed(tmp_path) == [(4, "periodic"), (8, "periodic")]


def test_a_save_too_slow_to_wait_for_is_abandoned_and_never_committed(tmp_path: Path) -> None:
    ckpt, codec = make(tmp_path, async_wait_seconds=0.05)
    for step in range(1, 9):
        ckpt.step(step, {"x": step})
    # Step 4 is still writing: given up on; step 8 is written synchronously (one at a time).
    assert committed(tmp_path) == [(8, "periodic")]
    assert ckpt.inflight is None and ckpt._abandoned is not None
    codec.gate.set()
    # Done either way: the step-8 GC already removed step 4's directory under the late writer.
    assert ckpt._abandoned.wait(30) in (0, 1)
    for step in range(9, 13):
        ckpt.step(step, {"x": step})
    assert ckpt._abandoned is None and ckpt.inflight is not None  # background again
    ckpt.close()
    assert committed(tmp_path) == [(8, "periodic"), (12, "periodic")]  # 4 never


def test_emergency_waits_for_the_in_flight_save_then_saves_its_step(tmp_path: Path) -> None:
    ckpt, codec = make(tmp_path)
    for step in range(1, 6):
        ckpt.step(step, {"x": step})
    ckpt.flag.request(StopLevel.SAVE_AND_EXIT, "spot-interruption")
    threading.Timer(0.2, codec.gate.set).start()
    assert ckpt.step(6, {"x": 6}) is True
    assert committed(tmp_path) == [(4, "periodic"), (6, "emergency")]
    found = discover(PosixTier(tmp_path))
    assert (
        found is not None
        and found.parent is not None
        and found.parent.startswith("step-000000000004-")
    )


def test_emergency_supersedes_a_stuck_save_within_the_deadline(tmp_path: Path) -> None:
    ckpt, codec = make(tmp_path, async_wait_seconds=0.05)
    for step in range(1, 6):
        ckpt.step(step, {"x": step})
    ckpt.flag.request(StopLevel.SAVE_AND_EXIT, "spot-interruption")
    assert ckpt.step(6, {"x": 6}) is True  # the gate never opens: storage hung on step 4
    assert committed(tmp_path) == [(6, "emergency")]
    assert data_dirs(tmp_path) == [4, 6]  # step 4's directory: garbage without a manifest
    restored: dict[str, Any] = {"x": None}
    assert Checkpointer(tmp_path, codec=GatedCodec()).restore(restored) == 6
    assert restored == {"x": 6}
    codec.gate.set()


def test_a_failed_background_write_is_not_committed_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt, codec = make(tmp_path)
    codec.fail = True
    codec.gate.set()
    for step in range(1, 5):
        ckpt.step(step, {"x": step})
    assert ckpt.inflight is not None and ckpt.inflight.wait(30) == 1
    ckpt.step(5, {"x": 5})
    assert ckpt.inflight is None and committed(tmp_path) == []
    assert "disk full" in caplog.text
    codec.fail = False
    for step in range(6, 9):
        ckpt.step(step, {"x": step})
    ckpt.close()
    assert committed(tmp_path) == [(8, "periodic")]


def test_codecs_without_staging_and_opt_out_save_synchronously(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "a", every_steps=2, codec="pickle", async_periodic=False)
    ckpt.step(2, {"x": 2})
    assert ckpt.inflight is None and committed(tmp_path / "a") == [(2, "periodic")]
    background = Checkpointer(tmp_path / "b", every_steps=2, codec="pickle")
    background.step(2, {"x": 2})
    assert background.inflight is not None
    background.close()
    assert committed(tmp_path / "b") == [(2, "periodic")]
