"""A resumed run reports how many steps the interrupted run had done past its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetrain.api.constants import ANNOTATION_RESUMED
from kubetrain.api.protocol import Resumed
from kubetrain.runtime import Checkpointer
from kubetrain.runtime.agent import CheckpointAgent
from kubetrain.runtime.signals import StopFlag


class Pod:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def annotations(self) -> dict[str, str]:
        return dict(self.data)

    def annotate(self, key: str, value: str) -> None:
        self.data[key] = value

    def watch_annotations(self, on_change: Any, stop: Any) -> None:
        on_change(self.annotations())


def train(ckpt: Checkpointer, state: dict[str, Any], start: int, stop: int) -> None:
    for step in range(start, stop):
        state["total"] += step
        ckpt.step(step + 1, state)


@pytest.mark.parametrize(
    ("died_at", "every", "expected"),
    [
        (47, 20, {"step": 40, "previousStep": 47, "lostSteps": 7, "savedWorldSize": 1}),
        (40, 20, {"step": 40, "previousStep": 40, "lostSteps": 0, "savedWorldSize": 1}),
        (13, 20, {"step": 0, "previousStep": 13, "lostSteps": 13, "savedWorldSize": None}),
    ],
)
def test_resume_reports_lost_steps(
    tmp_path: Path, died_at: int, every: int, expected: dict[str, int | None]
) -> None:
    # Synchronous saves: the step-40 save is committed before the node vanishes (with background
    # saves it could still be in flight and lost; test_runtime_async covers that case).
    first = Checkpointer(tmp_path, every_steps=every, codec="pickle", async_periodic=False)
    train(first, {"total": 0}, 0, died_at)  # then the node vanishes: no save, no goodbye

    pod = Pod()
    second = Checkpointer(
        tmp_path, every_steps=every, codec="pickle", agent=CheckpointAgent(pod, StopFlag())
    )
    state = {"total": 0}
    assert second.restore(state) == expected["step"]
    report = json.loads(pod.data[ANNOTATION_RESUMED])
    assert {k: report.get(k) for k in expected} == expected
    assert report["worldSize"] == 1
    decoded = Resumed.decode(pod.data[ANNOTATION_RESUMED])
    assert decoded is not None and decoded.saved_world_size == expected["savedWorldSize"]
    assert not decoded.resharded


def test_a_first_run_reports_nothing(tmp_path: Path) -> None:
    pod = Pod()
    ckpt = Checkpointer(tmp_path, codec="pickle", agent=CheckpointAgent(pod, StopFlag()))
    assert ckpt.restore({"total": 0}) == 0
    assert ANNOTATION_RESUMED not in pod.data


@pytest.mark.parametrize(
    ("raw", "saved", "current", "resharded"),
    [
        ('{"step": 40, "savedWorldSize": 4, "worldSize": 2}', 4, 2, True),
        ('{"step": 40, "savedWorldSize": 2, "worldSize": 2}', 2, 2, False),
        ('{"step": 40}', None, None, False),  # an older runtime: unknown, not a resize
        ('{"step": 40, "savedWorldSize": 0, "worldSize": "x"}', None, None, False),
    ],
)
def test_resumed_says_which_world_size_wrote_the_checkpoint(
    raw: str, saved: int | None, current: int | None, resharded: bool
) -> None:
    decoded = Resumed.decode(raw)
    assert decoded is not None
    assert (decoded.saved_world_size, decoded.world_size, decoded.resharded) == (
        saved,
        current,
        resharded,
    )
    assert Resumed.decode(decoded.encode()) == decoded
