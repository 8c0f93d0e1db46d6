"""The goodput simulator's arithmetic on hand-checkable timelines (hack/bench/goodput_sim.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "bench"))

from goodput_sim import Interruption, Params, Run, on_demand

HOUR = 3600.0
# 4 nodes, 112 GB: save 28 s (1 GB/s/node), restore 14 s (2 GB/s/node), stall 1.4 s (20 GB/s).
P = Params(
    horizon_h=1.0,
    checkpoint_interval_s=1e9,  # no periodic saves in this hour
    notice_to_request_s=0.2,
    request_to_commit_overhead_s=0.0,
)


def replay(strategy: str, events: list[Interruption], params: Params = P) -> Run:
    run = Run(params, strategy)
    run.replay(events)
    return run


def test_without_interruptions_only_the_save_stalls_count() -> None:
    params = Params(horizon_h=1.0, checkpoint_interval_s=600.0)
    sync = replay("periodic-restart", [], params)
    background = replay("kubetrain", [], params)
    # 3600 s = cycles of 600 s training + the stall: sync stalls 28 s, background 1.4 s.
    assert sync.work == pytest.approx(3600 - 5 * 28.0)
    assert background.work == pytest.approx(3600 - 5 * 1.4)
    assert sync.committed == background.committed == pytest.approx(5 * 600.0)
    assert on_demand(params)["goodput"] == pytest.approx(600 / 628)


def test_noticed_interruption_with_emergency_checkpoint_loses_no_work() -> None:
    run = replay("kubetrain", [Interruption(at=1000.0, nodes=1, outage=0.0, noticed=True)])
    # Training until the request (1000.2), save 28 s; the replacement node is Ready at
    # 1000 + 120 s (launched on the notice); then container start 120 s and restore 14 s.
    resumed = 1000 + P.provision_s + P.startup_s + P.restore_s(4)
    assert run.lost == 0.0
    assert run.work == pytest.approx(1000.2 + (HOUR - resumed))
    summary = run.summary()
    assert summary["goodput"] == pytest.approx(run.work / HOUR)
    # Paid: 4 nodes while training and saving, 3 survivors while waiting, 4 while booting.
    billed = 4 * 1028.2 + 3 * (1120 - 1028.2) + 4 * (HOUR - 1120)
    assert run.billed == pytest.approx(billed)
    assert summary["cost_per_useful_gpu_h"] == pytest.approx(0.3 * billed / (4 * run.work))


def test_periodic_restart_loses_the_work_since_the_last_checkpoint() -> None:
    params = Params(horizon_h=1.0, checkpoint_interval_s=600.0)
    run = replay(
        "periodic-restart", [Interruption(at=1000.0, nodes=1, outage=0.0, noticed=True)], params
    )
    # Saved at 600 (committed at 628); trained on through the notice until 1120; restarted
    # after failure detection (60 s) from the step-600 checkpoint.
    assert run.lost == pytest.approx(600 + 1120 - 628 - 600)
    restarted = 1120 + params.baseline_detect_s + params.startup_s + params.restore_s(4)
    assert run.t == HOUR and run.work == pytest.approx(600 + _trained(restarted, 600, 28))


def test_elastic_continues_on_survivors_and_grows_back() -> None:
    burst = Interruption(at=1000.0, nodes=2, outage=1800.0, noticed=True)
    plain = replay("kubetrain", [burst], Params(horizon_h=2.0))
    elastic = replay("kubetrain-elastic", [burst], Params(horizon_h=2.0))
    assert elastic.work > plain.work
    assert elastic.nodes == plain.nodes == 4  # grown back once capacity returned


def _trained(start: float, interval: float, stall: float) -> float:
    """Work from `start` to the end of the hour with a sync save every `interval`."""
    t, work = start, 0.0
    while t < HOUR:
        step = min(interval, HOUR - t)
        work, t = work + step, t + step
        t += stall if t < HOUR else 0.0
    return work
