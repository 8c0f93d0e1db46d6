"""kubetrain.metrics: counters derive from status transitions (read vs written), once each."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from kubetrain import metrics
from kubetrain.k8s import resource_of


def value(name: str, **labels: str) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels)
    return got or 0.0


def job(status: dict[str, Any], name: str = "j") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}, "status": status}


SPOT = "aws-node-termination-handler/spot-itn"
DETECTED = {"node": "n1", "source": SPOT, "detectedAt": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({}, {"phase": "Pending", "attempt": 1}, {("kubetrain_attempts_started_total", ()): 1}),
        (
            {"attempt": 1, "restarts": {"failures": 0}},
            {"attempt": 2, "restarts": {"failures": 1, "interruptions": 0}},
            {
                ("kubetrain_attempts_started_total", ()): 1,
                ("kubetrain_restarts_total", (("reason", "failure"),)): 1,
                ("kubetrain_restarts_total", (("reason", "interruption"),)): 0,
            },
        ),
        (
            {"interruptions": []},
            {"interruptions": [{**DETECTED, "requestedAt": "2026-01-01T00:00:00Z"}]},
            {
                ("kubetrain_interruptions_total", (("source", SPOT),)): 1,
                ("kubetrain_interruption_notice_to_request_seconds_count", ()): 1,
                ("kubetrain_interruption_notice_to_commit_seconds_count", ()): 0,
            },
        ),
        (
            {"interruptions": [{**DETECTED, "requestedAt": "2026-01-01T00:00:00Z"}]},
            {
                "interruptions": [
                    {
                        **DETECTED,
                        "requestedAt": "2026-01-01T00:00:00Z",
                        "committedAt": "2026-01-01T00:00:07Z",
                        "lostSteps": 3,
                    }
                ]
            },
            {
                ("kubetrain_interruptions_total", (("source", SPOT),)): 0,
                ("kubetrain_interruption_notice_to_request_seconds_count", ()): 0,
                ("kubetrain_interruption_notice_to_commit_seconds_count", ()): 1,
                ("kubetrain_interruption_notice_to_commit_seconds_sum", ()): 7,  # from the stamps
                ("kubetrain_lost_steps_total", ()): 3,
            },
        ),
        (  # the commit wrote lostSteps 0; the resumed rank 0 measured 5 later
            {
                "interruptions": [
                    {**DETECTED, "committedAt": "2026-01-01T00:00:07Z", "lostSteps": 0}
                ]
            },
            {
                "interruptions": [
                    {**DETECTED, "committedAt": "2026-01-01T00:00:07Z", "lostSteps": 5}
                ]
            },
            {("kubetrain_lost_steps_total", ()): 5},
        ),
        (
            {"phase": "Running", "checkpoint": {"id": "a", "step": 10, "kind": "periodic"}},
            {"phase": "Succeeded", "checkpoint": {"id": "b", "step": 20, "kind": "emergency"}},
            {
                ("kubetrain_jobs_finished_total", (("phase", "Succeeded"),)): 1,
                ("kubetrain_checkpoints_committed_total", (("kind", "emergency"),)): 1,
            },
        ),
        (  # the same status written again (or nothing written): nothing counted
            {"phase": "Running", "attempt": 2, "restarts": {"failures": 1}},
            {"phase": "Running", "attempt": 2, "restarts": {"failures": 1}},
            {
                ("kubetrain_attempts_started_total", ()): 0,
                ("kubetrain_restarts_total", (("reason", "failure"),)): 0,
            },
        ),
    ],
)
def test_transitions_are_counted_once(
    old: dict[str, Any], new: dict[str, Any], expected: dict[tuple[str, tuple[Any, ...]], float]
) -> None:
    metrics.forget("ns", "j")
    before = {key: value(key[0], **dict(key[1])) for key in expected}
    metrics.record_status(job(old), new)
    for key, moved in expected.items():
        assert value(key[0], **dict(key[1])) - before[key] == pytest.approx(moved), key
    metrics.forget("ns", "j")


def test_phase_gauge_and_checkpoint_age_follow_live_jobs() -> None:
    running = {"phase": "Running", "checkpoint": {"step": 1, "committedAt": "2026-01-01T00:00:00Z"}}
    metrics.record_status(job({}, "a"), running)
    metrics.record_status(job(running, "b"), None)  # nothing written: still tracked
    assert value("kubetrain_jobs", phase="Running") == 2
    assert value("kubetrain_checkpoint_age_seconds", namespace="ns", job="a") > 0
    metrics.record_status(job(running, "a"), {**running, "phase": "Succeeded"})
    assert value("kubetrain_jobs", phase="Running") == 1
    assert (
        metrics.REGISTRY.get_sample_value(
            "kubetrain_checkpoint_age_seconds", {"namespace": "ns", "job": "a"}
        )
        is None
    )  # finished jobs have no checkpoint age
    metrics.forget("ns", "a")
    metrics.forget("ns", "b")
    assert value("kubetrain_jobs", phase="Running") == 0
    assert value("kubetrain_jobs", phase="Succeeded") == 0


def test_goodput_gauges_follow_the_status() -> None:
    goodput = {
        "ratio": 0.75,
        "total": {"productive": 300.0, "waiting": 60.0, "stalled": 40.0, "wall": 400.0},
    }
    metrics.record_status(job({}, "g"), {"phase": "Running", "goodput": goodput})
    assert value("kubetrain_goodput_ratio", namespace="ns", job="g") == 0.75
    assert value("kubetrain_job_time_seconds", namespace="ns", job="g", use="productive") == 300
    assert value("kubetrain_job_time_seconds", namespace="ns", job="g", use="stalled") == 40
    assert (
        metrics.REGISTRY.get_sample_value(
            "kubetrain_job_time_seconds", {"namespace": "ns", "job": "g", "use": "wall"}
        )
        is None
    )  # the sum of the others
    metrics.forget("ns", "g")
    assert (
        metrics.REGISTRY.get_sample_value(
            "kubetrain_goodput_ratio", {"namespace": "ns", "job": "g"}
        )
        is None
    )


def test_not_ready_until_every_watch_has_listed() -> None:
    watches = metrics._Watches()
    watches.instrumented = True
    assert not watches.ready()[0]
    watches.state = {("trainingjobs", ""): "up", ("pods", ""): "up", ("nodes", ""): "listing"}
    assert not watches.ready()[0]
    watches.state[("nodes", "")] = "up"
    assert watches.ready()[0]
    watches.state[("pods", "")] = "down"  # a stream broke: not ready until it lists again
    assert not watches.ready()[0]


def test_a_standby_replica_is_ready() -> None:
    """Peering paused this replica (another one is active): ready, so PDBs allow drains."""

    class Paused:
        on = True

        def is_on(self) -> bool:
            return self.on

    watches = metrics._Watches()
    watches.instrumented = True
    watches.paused = Paused()
    watches.state = {("clusterkopfpeerings", ""): "up", ("trainingjobs", ""): "down"}
    assert watches.ready() == (True, "standby: paused by peering")
    watches.paused.on = False  # it takes over: ready once its watches have listed
    assert not watches.ready()[0]
    watches.state |= {("trainingjobs", ""): "up", ("pods", ""): "up", ("nodes", ""): "up"}
    assert watches.ready()[0]


def test_reconcile_timer_counts_errors_and_durations() -> None:
    passes = value("kubetrain_reconcile_duration_seconds_count")
    errors = value("kubetrain_reconcile_errors_total")
    with metrics.reconcile_timer():
        pass
    with pytest.raises(RuntimeError), metrics.reconcile_timer():
        raise RuntimeError("api hiccup")
    assert value("kubetrain_reconcile_duration_seconds_count") - passes == 2
    assert value("kubetrain_reconcile_errors_total") - errors == 1


def test_an_elastic_jobs_size_is_a_gauge_while_it_runs() -> None:
    short = {"phase": "Running", "size": {"current": 2, "desired": 4, "reason": "room for 2"}}
    metrics.record_status(job({}, "e"), short)
    assert value("kubetrain_job_nodes", namespace="ns", job="e", size="current") == 2
    assert value("kubetrain_job_nodes", namespace="ns", job="e", size="desired") == 4
    metrics.record_status(job(short, "e"), {**short, "size": {"current": 4, "desired": 4}})
    assert value("kubetrain_job_nodes", namespace="ns", job="e", size="current") == 4
    metrics.record_status(job(short, "e"), {**short, "phase": "Succeeded"})
    assert (
        metrics.REGISTRY.get_sample_value(
            "kubetrain_job_nodes", {"namespace": "ns", "job": "e", "size": "current"}
        )
        is None
    )
    metrics.forget("ns", "e")


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ml/pods", "pods"),
        ("/api/v1/namespaces/ml/pods/llm-1-0", "pods"),
        ("/api/v1/pods", "pods"),
        (
            "/apis/kubetrain.dev/v1alpha1/namespaces/ml/trainingjobs/llm/status",
            "trainingjobs/status",
        ),
        ("/apis/rbac.authorization.k8s.io/v1/namespaces/ml/roles", "roles"),
        ("/api/v1/nodes/n1", "nodes"),
        ("/api/v1/namespaces/ml", "namespaces"),
    ],
)
def test_api_requests_are_labelled_by_resource_as_the_api_server_does(
    path: str, resource: str
) -> None:
    assert resource_of(path) == resource


def test_the_operators_api_requests_are_exported() -> None:
    counts = {("POST", "pods", 201): 8, ("PATCH", "trainingjobs/status", 200): 2}
    metrics.API_REQUESTS.counts = counts
    try:
        text = generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.API_REQUESTS.counts = {}
    assert 'kubetrain_api_requests_total{code="201",resource="pods",verb="POST"} 8.0' in text
