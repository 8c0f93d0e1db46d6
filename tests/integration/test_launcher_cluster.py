"""The EKS launcher against the real local API server with the TrainingJob CRD installed.

No operator runs here: the test writes the job's status itself through the status subresource,
which is exactly what the launcher reads. (tests/e2e/test_pipeline_eks_sagemaker.py runs the
operator.)
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from operator_harness import install_crd

from cluster import Cluster
from kubetrain.client import TrainingJobClient
from kubetrain_kfp import launcher
from kubetrain_kfp.constants import EXIT_TERMINATED, GROUP, PLURAL, VERSION
from kubetrain_kfp.launcher_spec import Outcome, build_manifest, build_spec
from kubetrain_kfp.naming import k8s_name
from kubetrain_kfp.validate import InputError
from support import wait_for

pytestmark = pytest.mark.cluster
POLL = 0.2
IMAGE = "registry.example/train:1"


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    install_crd(cluster)


@pytest.fixture
def api(cluster: Cluster, crd: None, namespace: str) -> TrainingJobClient:
    return launcher.client(cluster.kubeconfig, namespace)


def manifest(namespace: str, run_id: str, task: str = "train", **spec: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "image": IMAGE,
        "command": ["python", "train.py"],
        "nodes": 2,
        "accelerator": "nvidia",
        "instance_type": "p5.48xlarge",
        "checkpoint_s3_uri": "s3://bucket/ckpt",
        "capacity_type": "spot",
        "max_restarts": 1,
    }
    body = build_spec(**{**inputs, **spec})
    return build_manifest(k8s_name("kt", run_id, task), namespace, body, run_id, task)


def get(api: TrainingJobClient, ns: str, name: str) -> dict[str, Any] | None:
    job = api.find(name, namespace=ns)
    return None if job is None else job.raw


def set_status(api: TrainingJobClient, ns: str, name: str, status: dict[str, Any]) -> None:
    api.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, {"status": status}
    )


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


RUNNING = {
    "phase": "Running",
    "attempt": 1,
    "conditions": [cond("Ready", "True", "AllRanksRunning")],
    "startTime": "2026-01-01T00:00:00Z",
}
INTERRUPTED = {
    "phase": "Running",
    "attempt": 2,
    "restarts": {"failures": 0, "interruptions": 1},
    "conditions": [cond("Ready", "True", "AllRanksRunning")],
    "interruptions": [
        {
            "node": "spot-gpu-1",
            "source": "aws-node-termination-handler/spot-itn",
            "detectedAt": "2026-01-01T00:10:00Z",
            "checkpointStep": 500,
            "lostSteps": 1,
        }
    ],
    "startTime": "2026-01-01T00:00:00Z",
}
SUCCEEDED = {
    **INTERRUPTED,
    "phase": "Succeeded",
    "conditions": [cond("Succeeded", "True", "AllRanksSucceeded")],
    "checkpoint": {
        "step": 900,
        "uri": "s3://bucket/ckpt/manifests/step-000000000900-a.json",
        "kind": "periodic",
    },
    "completionTime": "2026-01-01T00:30:00Z",
}


class Background:
    """launcher.run in a thread (signals are not involved: those tests use a subprocess)."""

    def __init__(self, api: TrainingJobClient, body: dict[str, Any]) -> None:
        self.result: Outcome | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = launcher.run(api, body, poll_seconds=POLL)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "launcher did not return"


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="kubetrain_kfp")
    yield caplog


def test_follows_job_to_success_and_reports_outputs(
    api: TrainingJobClient, namespace: str, caplog_info: pytest.LogCaptureFixture
) -> None:
    body = manifest(namespace, str(uuid.uuid4()))
    name = body["metadata"]["name"]
    run = Background(api, body)
    wait_for(lambda: get(api, namespace, name), what="TrainingJob created")
    set_status(api, namespace, name, RUNNING)
    wait_for(lambda: "condition Ready=True reason=AllRanksRunning" in caplog_info.text, what="log")
    set_status(api, namespace, name, INTERRUPTED)
    wait_for(lambda: "interruption on node spot-gpu-1" in caplog_info.text, what="timeline")
    assert run.result is None and run.error is None  # still waiting while Running
    set_status(api, namespace, name, SUCCEEDED)
    run.join()
    assert run.error is None, run.error
    assert run.result is not None
    # The job mirrors to S3: the Model output is the committed checkpoint's data there.
    assert run.result.model_uri == "s3://bucket/ckpt/data/step-000000000900-a/"
    assert run.result.metrics == {
        "attempts": 2.0,
        "interruptions": 1.0,
        "failures": 0.0,
        "lost_steps": 1.0,
        "wall_seconds": 1800.0,
        "checkpoint_step": 900.0,
    }
    created = get(api, namespace, name)
    assert created is not None and created["spec"]["capacity"] == {"type": "spot"}


def test_retried_task_reattaches_to_the_same_job(
    api: TrainingJobClient, cluster: Cluster, namespace: str
) -> None:
    run_id = str(uuid.uuid4())
    body = manifest(namespace, run_id)
    name = body["metadata"]["name"]
    # Attempt 1 is killed without warning (pod evicted, node gone): no cleanup runs.
    first = subprocess.Popen([sys.executable, "-c", _script(cluster, body)])
    wait_for(lambda: get(api, namespace, name), what="TrainingJob created")
    set_status(api, namespace, name, RUNNING)
    uid = get(api, namespace, name)["metadata"]["uid"]  # type: ignore[index]
    first.kill()
    first.wait(timeout=30)
    # Attempt 2: the same run and task give the same name; it must follow the running job.
    retry = Background(api, manifest(namespace, run_id))
    wait_for(lambda: retry.thread.is_alive() and retry.result is None, what="retry waiting")
    set_status(api, namespace, name, SUCCEEDED)
    retry.join()
    assert retry.error is None, retry.error
    assert retry.result is not None and retry.result.job_name == name
    assert get(api, namespace, name)["metadata"]["uid"] == uid  # type: ignore[index]
    assert [j.name for j in api.list_jobs()] == [name]


def _script(cluster: Cluster, body: dict[str, Any]) -> str:
    return textwrap.dedent(
        f"""
        import logging
        logging.basicConfig(level=logging.INFO)
        from kubetrain_kfp import launcher
        api = launcher.client({cluster.kubeconfig!r})
        launcher.run(api, {body!r}, poll_seconds={POLL})
        """
    )


def test_terminated_run_deletes_the_job(
    api: TrainingJobClient, cluster: Cluster, namespace: str
) -> None:
    body = manifest(namespace, str(uuid.uuid4()))
    name = body["metadata"]["name"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _script(cluster, body)], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: get(api, namespace, name), what="TrainingJob created")
        set_status(api, namespace, name, RUNNING)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_TERMINATED, stderr
    wait_for(lambda: get(api, namespace, name) is None, what="TrainingJob deleted")
    assert f"deleted TrainingJob {namespace}/{name}" in stderr


def test_failed_job_fails_the_task_with_its_reason(api: TrainingJobClient, namespace: str) -> None:
    body = manifest(namespace, str(uuid.uuid4()))
    name = body["metadata"]["name"]
    run = Background(api, body)
    wait_for(lambda: get(api, namespace, name), what="TrainingJob created")
    set_status(
        api,
        namespace,
        name,
        {
            "phase": "Failed",
            "attempt": 2,
            "conditions": [
                cond(
                    "Failed",
                    "True",
                    "RestartBudgetExhausted",
                    "rank 1 exited 1 twice (maxRestarts=1)",
                )
            ],
        },
    )
    run.join()
    assert isinstance(run.error, launcher.TrainingJobFailed)
    assert "RestartBudgetExhausted: rank 1 exited 1 twice (maxRestarts=1)" in str(run.error)


def test_name_collision_with_another_spec_is_refused(
    api: TrainingJobClient, namespace: str
) -> None:
    run_id = str(uuid.uuid4())
    launcher.create_or_attach(api, manifest(namespace, run_id))
    with pytest.raises(InputError, match="already exists with a different spec"):
        launcher.create_or_attach(api, manifest(namespace, run_id, nodes=4))
