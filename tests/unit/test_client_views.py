"""The client's typed views: what a TrainingJob's status and its pods mean, read once."""

from __future__ import annotations

import json
from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    LABEL_ATTEMPT,
    LABEL_RANK,
)
from kubetrain.client.views import JobView, PodView, Timeline, rank_pod

JOB: dict[str, Any] = {
    "metadata": {"name": "llama", "namespace": "ml", "uid": "u1"},
    "spec": {"nodes": 4, "suspend": False},
    "status": {
        "phase": "Running",
        "attempt": 2,
        "nodes": {"ready": 4, "total": 4},
        "restarts": {"failures": 0, "interruptions": 1},
        "checkpoint": {"id": "j-1-1", "step": 90, "uri": "s3://b/m.json", "kind": "emergency"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllRanksRunning"}],
        "interruptions": [
            {
                "node": "n1",
                "source": "aws-node-termination-handler/spot-itn",
                "attempt": 1,
                "detectedAt": "2026-01-01T00:00:00Z",
                "checkpointStep": 90,
                "lostSteps": 10,
                "resumedAt": "2026-01-01T00:02:00Z",
            }
        ],
        "goodput": {
            "ratio": 0.75,
            "total": {"productive": 300.0, "startup": 60, "recompute": 40.0},
        },
    },
}


def pod(attempt: int, rank: int, *, deleting: bool = False, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"llama-{attempt}-{rank}",
        "labels": {LABEL_ATTEMPT: str(attempt), LABEL_RANK: str(rank)},
        "annotations": annotations,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": "Running"}}


def test_job_view_reads_status() -> None:
    job = JobView.from_object(JOB)
    assert (job.phase, job.attempt, job.nodes_ready, job.nodes_total) == ("Running", 2, 4, 4)
    assert job.checkpoint is not None and job.checkpoint.step == 90
    assert job.interruptions[0].lost_steps == 10
    assert job.goodput() == 0.75
    assert job.time_split() == {"productive": 300.0, "startup": 60.0, "recompute": 40.0}
    assert not job.terminal


def test_empty_job_is_pending() -> None:
    job = JobView.from_object({"metadata": {"name": "x"}, "spec": {"nodes": 2}})
    assert (job.phase, job.nodes_total, job.checkpoint, job.goodput()) == ("Pending", 2, None, None)


def test_failure_message_names_the_reason() -> None:
    failed = {
        **JOB,
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "InvalidSpec", "message": "bad"}
            ],
        },
    }
    assert JobView.from_object(failed).failure_message() == "InvalidSpec: bad"


def test_timeline_reports_each_change_once_including_checkpoints() -> None:
    timeline = Timeline()
    lines = timeline.changes(JobView.from_object(JOB))
    assert lines[0] == "phase - -> Running (attempt 2)"
    assert any(line.startswith("interruption on node n1") for line in lines)
    assert lines[-1] == "checkpoint step 90 committed (emergency) s3://b/m.json"
    assert timeline.changes(JobView.from_object(JOB)) == []


def test_rank_pod_prefers_the_newest_attempt_and_honours_an_explicit_one() -> None:
    commit = json.dumps({"id": "c", "step": 5, "manifest": "m"})
    pods = [
        PodView.from_object(pod(1, 1, **{ANNOTATION_CHECKPOINT_COMMITTED: commit})),
        PodView.from_object(pod(2, 1)),
        PodView.from_object(pod(2, 0, deleting=True)),
    ]
    assert rank_pod(pods, 1, None) == pods[1]
    assert rank_pod(pods, 1, 1) == pods[0]
    assert pods[0].committed == {"id": "c", "step": 5, "manifest": "m"}
    assert rank_pod(pods, 3, None) is None
    assert not pods[2].live
