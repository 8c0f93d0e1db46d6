"""Checkpointer in one process with the torch-free pickle codec: the loop, signals, resume rules."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_KEEP,
    EXIT_CHECKPOINTED_AND_STOPPED,
)
from kubetrain.runtime import Checkpointer, ManifestError, PosixTier, StopFlag, StopLevel, discover
from kubetrain.runtime.agent import CheckpointAgent
from kubetrain.runtime.signals import install_signal_handlers


class Counter:
    """A stateful object, like a model or a sampler."""

    def __init__(self) -> None:
        self.value = 0

    def state_dict(self) -> dict[str, int]:
        return {"value": self.value}

    def load_state_dict(self, sd: dict[str, int]) -> None:
        self.value = sd["value"]


def run(
    ckpt: Checkpointer,
    state: dict[str, Any],
    start: int,
    stop: int,
    hooks: dict[int, Any] | None = None,
) -> int:
    hooks = hooks or {}
    step = start
    for step in range(start, stop):
        state["counter"].value += step
        state["history"] = [*state["history"], step]
        if step + 1 in hooks:
            hooks[step + 1]()
        ckpt.step(step + 1, state)
    return step + 1


def fresh_state() -> dict[str, Any]:
    return {"counter": Counter(), "history": []}


def test_periodic_save_and_exact_restore(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, job="j", every_steps=4, keep=2)
    state = fresh_state()
    assert ckpt.restore(state) == 0
    run(ckpt, state, 0, 10)
    ckpt.flush()  # periodic saves commit in the background; flush waits for the last one
    found = discover(PosixTier(tmp_path))
    assert found is not None and found.step == 8 and found.kind == "periodic"
    assert len(os.listdir(tmp_path / "manifests")) == 2  # keep=2

    again = fresh_state()
    assert Checkpointer(tmp_path, job="j").restore(again) == 8
    assert again["counter"].value == sum(range(8))
    assert again["history"] == list(range(8))


def test_sigterm_saves_this_step_and_exits_83(tmp_path: Path) -> None:
    flag = StopFlag()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    install_signal_handlers(flag)
    try:
        ckpt = Checkpointer(tmp_path, every_steps=100, flag=flag)
        state = fresh_state()
        with pytest.raises(SystemExit) as exc:
            run(ckpt, state, 0, 50, {7: lambda: os.kill(os.getpid(), signal.SIGTERM)})
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert exc.value.code == EXIT_CHECKPOINTED_AND_STOPPED
    found = discover(PosixTier(tmp_path))
    assert found is not None and (found.step, found.kind) == (7, "emergency")
    resumed = fresh_state()
    assert Checkpointer(tmp_path).restore(resumed) == 7
    run(Checkpointer(tmp_path), resumed, 7, 50)
    reference = fresh_state()
    run(Checkpointer(tmp_path / "ref"), reference, 0, 50)
    assert resumed["counter"].value == reference["counter"].value
    assert resumed["history"] == reference["history"]


def test_exit_on_emergency_false_returns_stop(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, exit_on_emergency=False)
    state = fresh_state()
    assert ckpt.step(1, state) is False
    ckpt.flag.request(StopLevel.SAVE_AND_EXIT, "test")
    assert ckpt.step(2, state) is True
    assert ckpt.step(2, state) is True  # asked again at the same step: no second checkpoint
    assert len(os.listdir(tmp_path / "manifests")) == 1


def test_save_level_checkpoints_and_keeps_going(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    state = fresh_state()
    ckpt.flag.request(StopLevel.SAVE, "rebalance-recommendation")
    assert ckpt.step(3, state) is False
    assert ckpt.flag.level == StopLevel.NONE
    assert ckpt.step(4, state) is False
    ckpt.flush()
    found = discover(PosixTier(tmp_path))
    assert found is not None and (found.step, found.kind) == (3, "periodic")


def test_resume_hint_is_revalidated(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, every_steps=2, keep=5)
    run(ckpt, fresh_state(), 0, 6)
    ckpt.flush()
    names = sorted(p.name for p in (tmp_path / "manifests").iterdir())
    hinted_older = str(tmp_path / "manifests" / names[0])
    # A newer complete checkpoint than the hint wins (the operator may not have seen it yet).
    assert Checkpointer(tmp_path, resume_manifest=hinted_older).restore(fresh_state()) == 6
    # A hint at the newest is used; a broken hint falls back to discovery.
    newest = discover(PosixTier(tmp_path))
    assert newest is not None
    for f in newest.files:
        (tmp_path / f.path).unlink()
    assert Checkpointer(tmp_path, resume_manifest=newest.path).restore(fresh_state()) == 4


def test_codec_and_world_size_mismatch_name_the_fix(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, fresh_state())
    manifest = tmp_path / "manifests" / os.listdir(tmp_path / "manifests")[0]
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "world_size": 4}))
    with pytest.raises(ManifestError, match="4 ranks"):
        Checkpointer(tmp_path).restore(fresh_state())
    manifest.write_text(json.dumps({**doc, "codec": "dcp"}))
    with pytest.raises(ManifestError, match=r"codec=.dcp."):
        Checkpointer(tmp_path, codec="pickle").restore(fresh_state())


def test_restore_names_missing_state_keys(tmp_path: Path) -> None:
    Checkpointer(tmp_path).save(1, {"model": Counter()})
    with pytest.raises(KeyError, match="optimizer"):
        Checkpointer(tmp_path).restore({"model": Counter(), "optimizer": Counter()})


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CHECKPOINT_DIR, raising=False)
    with pytest.raises(ValueError, match=r"spec\.checkpoint\.dir"):
        Checkpointer.from_env(install_signals=False)
    monkeypatch.setenv(ENV_CHECKPOINT_DIR, str(tmp_path))
    monkeypatch.setenv(ENV_CHECKPOINT_KEEP, "x")
    with pytest.raises(ValueError, match="KUBETRAIN_CHECKPOINT_KEEP"):
        Checkpointer.from_env(install_signals=False)
    monkeypatch.setenv(ENV_CHECKPOINT_KEEP, "1")
    ckpt = Checkpointer.from_env(install_signals=False, every_steps=1)
    run(ckpt, fresh_state(), 0, 3)
    ckpt.flush()  # the last background save committed, its garbage collected
    assert len(os.listdir(tmp_path / "manifests")) == 1


class FakePod:
    def __init__(self, annotations: dict[str, str] | None = None) -> None:
        self.data = dict(annotations or {})
        self.patches: list[tuple[str, str]] = []

    def annotations(self) -> dict[str, str]:
        return dict(self.data)

    def annotate(self, key: str, value: str) -> None:
        self.patches.append((key, value))
        self.data[key] = value

    def watch_annotations(self, on_change: Any, stop: threading.Event) -> None:
        on_change(self.annotations())


def request(ident: str, **extra: str) -> dict[str, str]:
    body = {"id": ident, "reason": "spot-interruption", "deadline": "2030-01-01T00:00:00Z", **extra}
    return {ANNOTATION_CHECKPOINT_REQUEST: json.dumps(body)}


def test_agent_request_sets_flag_once_and_reports_commit(tmp_path: Path) -> None:
    pod = FakePod()
    flag = StopFlag()
    agent = CheckpointAgent(pod, flag)
    agent.on_annotations({"unrelated": "x", ANNOTATION_CHECKPOINT_REQUEST: "not json"})
    assert flag.level == StopLevel.NONE
    agent.on_annotations(request("r1"))
    got = flag.peek()
    assert got is not None and got.level == StopLevel.SAVE_AND_EXIT
    assert (got.request_id, got.reason) == ("r1", "spot-interruption")
    assert got.deadline == pytest.approx(1893456000.0)

    ckpt = Checkpointer(tmp_path, flag=flag, agent=agent, exit_on_emergency=False)
    assert ckpt.step(5, fresh_state()) is True
    key, value = pod.patches[-1]
    committed = json.loads(value)
    assert key == ANNOTATION_CHECKPOINT_COMMITTED
    assert committed["id"] == "r1" and committed["step"] == 5 and committed["kind"] == "emergency"
    assert Path(committed["manifest"]).is_file()


def test_agent_ignores_answered_request_and_treats_rebalance_as_save() -> None:
    answered = json.dumps({"id": "r1", "step": 5, "manifest": "m", "kind": "emergency"})
    pod = FakePod({**request("r1"), ANNOTATION_CHECKPOINT_COMMITTED: answered})
    flag = StopFlag()
    agent = CheckpointAgent(pod, flag)
    agent.start()
    agent.close()
    assert agent._thread is not None
    agent._thread.join(5)
    assert flag.level == StopLevel.NONE  # a restarted process must not answer r1 again
    agent.on_annotations(request("r2", reason="rebalance-recommendation"))
    assert flag.level == StopLevel.SAVE
    agent.on_annotations(request("r3", then="exit"))
    assert flag.level == StopLevel.SAVE_AND_EXIT


def test_periodic_report_uses_checkpoint_id(tmp_path: Path) -> None:
    pod = FakePod(request("old"))
    agent = CheckpointAgent(pod, StopFlag())
    agent.answered.add("old")
    manifest = Checkpointer(tmp_path, agent=agent).save(3, fresh_state())
    assert json.loads(pod.patches[-1][1])["id"] == manifest.id
