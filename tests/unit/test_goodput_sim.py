"""The goodput simulator's arithmetic on hand-checkable timelines (hack/bench/goodput_sim.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "bench"))

from goodput_sim import Interruption, Params, Run, on_demand, replay_trace

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


def test_a_given_trace_replays_at_its_own_times_and_inputs() -> None:
    # A run like the drills' on the local cluster: 2 nodes, no checkpoint bytes to speak of, a
    # free node at once; one noticed interruption at 40 s of a 100 s run.
    doc = {
        "horizon_s": 100.0,
        "strategy": "kubetrain",
        "params": {
            "nodes": 2,
            "checkpoint_gb": 0.0,
            "checkpoint_interval_s": 1e9,
            "notice_to_request_s": 0.2,
            "request_to_commit_overhead_s": 0.1,
            "commit_to_gang_running_s": 0.3,
            "provision_s": 0.0,
            "startup_s": 5.0,
        },
        "interruptions": [{"at": 40.0, "nodes": 1, "outage": 0.0, "noticed": True}],
    }
    result = replay_trace(doc)
    # Trains to the request (40.2 s), commits 0.1 s later, the gang runs 0.3 s after that and
    # starts in 5 s: training again from 45.6 s to the end, nothing lost.
    assert result["work_s"] == pytest.approx(40.2 + (100 - 45.6))
    assert result["goodput"] == pytest.approx((40.2 + 54.4) / 100)
    assert result["lost_s"] == 0.0 and result["interruptions"] == 1
    missed = replay_trace({**doc, "interruptions": [{"at": 40.0, "noticed": False}]})
    assert missed["lost_s"] == pytest.approx(40.0)  # no notice, no periodic save: all lost
