"""TrainingJobs queued by a real Kueue (issue 11, level 2), asserted from a pod watch.

Kueue v0.17.1 runs as a local process against the test cluster (kueue_harness), with TrainingJob
as an external framework; the operator runs in-process (conftest `operator`). The pods are kwok's:
a test stands in for rank 0 where a checkpoint commit is needed (the protocol's annotation).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kueue_harness import Kueue, queue_objects, run_kueue
from operator_harness import apply, condition, dump, job_manifest, running_pods, status, wait_phase

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ENV_RESUME_MANIFEST,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_QUEUE_NAME,
    SCHEDULING_GATE_GANG,
)
from kubetrain.api.protocol import CheckpointCommitted, CheckpointRequest
from kubetrain.config import ENV_PROVISIONER_NODE_LABELS
from pod_watch import PodWatch
from support import wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def kueue(cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    with run_kueue(cluster, tmp_path_factory.mktemp("kueue")) as running:
        yield running


class PodLog(PodWatch):
    """Every pod change in a namespace, in the order the API server made them."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(cluster, namespace, name="pod-log")
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_event(self, kind: str, pod: Any) -> None:
        self.events.append((kind, self.core.api_client.sanitize_for_serialization(pod)))

    def of(self, job: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(index in the whole log, event type, pod) for the pods of one job."""
        with self.lock:
            return [
                (i, kind, pod)
                for i, (kind, pod) in enumerate(self.events)
                if pod["metadata"]["labels"].get(LABEL_JOB) == job
            ]


@pytest.fixture
def queue(
    cluster: Cluster, namespace: str, kueue: Kueue, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A LocalQueue (with its ClusterQueue and flavors) for this test; its name."""
    prefix = f"kt-{secrets.token_hex(3)}"
    gpus = getattr(request, "param", {}).get("gpus", 16)
    objects = queue_objects(prefix, namespace, gpus, preemption=True)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    wait_for(
        lambda: (
            condition(cluster.get("clusterqueue", prefix).get("status") or {}, "Active").get(
                "status"
            )
            == "True"
        ),
        timeout=30,
        what="ClusterQueue Active",
    )
    try:
        yield prefix
    finally:
        for obj in reversed(objects):
            cluster.kubectl(
                "delete", obj["kind"].lower(), obj["metadata"]["name"], "-n", namespace,
                "--wait=false", "--ignore-not-found", check=False,
            )  # fmt: skip


def queued_job(name: str, queue: str, **spec: Any) -> dict[str, Any]:
    manifest = job_manifest(name, **spec)
    manifest["metadata"]["labels"] = {LABEL_QUEUE_NAME: queue}
    return manifest


def workload(cluster: Cluster, namespace: str, job: str) -> dict[str, Any]:
    items = cluster.get("workloads", "-n", namespace, "-l", f"{LABEL_JOB}={job}")["items"]
    assert len(items) == 1, [i["metadata"]["name"] for i in items]
    out: dict[str, Any] = items[0]
    return out


def get_tj(cluster: Cluster, namespace: str) -> dict[str, str]:
    """`kubectl get tj` as a user reads it: name -> phase column."""
    lines = cluster.kubectl("get", "tj", "-n", namespace).stdout.splitlines()
    header = lines[0].split()
    return {row.split()[0]: row.split()[header.index("PHASE")] for row in lines[1:]}


def test_second_gang_creates_no_pod_until_the_first_ends_and_flavor_reaches_the_pods(
    cluster: Cluster, namespace: str, operator: KopfRunner, queue: str
) -> None:
    with PodLog(cluster, namespace) as log:
        apply(cluster, namespace, queued_job("first", queue))
        try:
            first = running_pods(cluster, namespace, "first", attempt=1, n=2)
        except AssertionError:
            print(dump(cluster, namespace), cluster.get("workloads", "-n", namespace))
            raise
        apply(cluster, namespace, queued_job("second", queue))
        st = wait_phase(cluster, namespace, "second", "Queued")
        assert condition(st, "Admitted")["status"] == "False"
        assert "LocalQueue " + queue in condition(st, "Ready")["message"]
        assert get_tj(cluster, namespace) == {"first": "Running", "second": "Queued"}
        wl = workload(cluster, namespace, "second")
        assert wl["metadata"]["ownerReferences"][0]["name"] == "second"
        assert wl["spec"]["queueName"] == queue
        [pod_set] = wl["spec"]["podSets"]
        assert pod_set["name"] == "workers" and pod_set["count"] == 2
        gpu = pod_set["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert gpu["nvidia.com/gpu"] == "8"

        # Admitted first job: Kueue chose the spot flavor (on-demand has no quota); its node
        # labels and tolerations are on every pod, and the pods run on spot nodes.
        st = status(cluster, namespace, "first")
        assert condition(st, "Admitted")["status"] == "True"
        assert f"{queue}-spot" in condition(st, "Admitted")["message"]
        for pod in first:
            assert pod["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"
            assert {
                "key": "example.com/spot-pool",
                "operator": "Exists",
                "effect": "NoSchedule",
            } in pod["spec"]["tolerations"]
            node = cluster.get("node", pod["spec"]["nodeName"])
            assert node["metadata"]["labels"]["karpenter.sh/capacity-type"] == "spot"

        for pod in first:
            cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
        wait_phase(cluster, namespace, "first", "Succeeded")
        second = running_pods(cluster, namespace, "second", attempt=1, n=2)
        assert (
            condition(workload(cluster, namespace, "first")["status"], "Finished")["status"]
            == "True"
        )
        assert condition(status(cluster, namespace, "second"), "Admitted")["status"] == "True"
        # Kueue's finalizer: held while the gang may run, let go once the job is done with it.
        held = workload(cluster, namespace, "second")["metadata"]["finalizers"]
        assert "kueue.x-k8s.io/resource-in-use" in held
        wait_for(
            lambda: not workload(cluster, namespace, "first")["metadata"].get("finalizers"),
            timeout=30,
            what="the finished Workload's finalizer let go",
        )

    first_done = max(
        i for i, _, pod in log.of("first") if pod["status"].get("phase") == "Succeeded"
    )
    second_events = log.of("second")
    assert second_events, "the watch saw no pod of the second job"
    assert min(i for i, _, _ in second_events) > first_done, (
        "a pod of the second job existed before the first job's pods finished"
    )
    assert {p["metadata"]["name"] for p in second} == {
        pod["metadata"]["name"] for _, kind, pod in second_events if kind == "ADDED"
    }
    # Deleting a job takes its Workload along (owner reference, the finalizer let go).
    cluster.kubectl("delete", "tj", "second", "-n", namespace, "--timeout=60s")
    wait_for(
        lambda: not cluster.get("workloads", "-n", namespace, "-l", f"{LABEL_JOB}=second")["items"],
        timeout=60,
        what="the deleted job's Workload gone",
    )


def _committed(step: int, request: CheckpointRequest, root: str) -> str:
    return CheckpointCommitted(request.id, step, f"{root}/step-{step}.json", "emergency").encode()


def test_preempted_gang_checkpoints_releases_its_pods_and_resumes_from_that_step(
    cluster: Cluster, namespace: str, operator: KopfRunner, queue: str
) -> None:
    classes = {f"kt-low-{queue}": 100, f"kt-high-{queue}": 1000}
    for name, value in classes.items():
        cluster.kubectl(
            "apply", "-f", "-",
            input=yaml.safe_dump({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value,
            }),
        )  # fmt: skip
    priority = lambda cls: {  # noqa: E731
        "podTemplate": {
            "metadata": {"annotations": {"sim.test/sigterm-exit-code": "143"}},
            "spec": {"priorityClassName": cls},
        },
        "checkpointDeadlineSeconds": 60,
    }
    try:
        _preemption(cluster, namespace, queue, priority, list(classes))
    finally:
        cluster.kubectl("delete", "priorityclass", *classes, "--ignore-not-found", check=False)


def _preemption(
    cluster: Cluster, namespace: str, queue: str, priority: Any, classes: list[str]
) -> None:
    with PodLog(cluster, namespace) as log:
        apply(cluster, namespace, queued_job("low", queue, **priority(classes[0])))
        low = running_pods(cluster, namespace, "low", attempt=1, n=2)
        assert workload(cluster, namespace, "low")["spec"]["priority"] == 100
        apply(cluster, namespace, queued_job("high", queue, **priority(classes[1])))

        # Kueue preempts `low`: every rank gets the checkpoint request, the pods stay meanwhile.
        def requests() -> list[CheckpointRequest] | None:
            pods = [cluster.get("pod", p["metadata"]["name"], "-n", namespace) for p in low]
            found = [
                CheckpointRequest.decode(
                    (p["metadata"].get("annotations") or {}).get(ANNOTATION_CHECKPOINT_REQUEST)
                )
                for p in pods
            ]
            return [r for r in found if r] if all(found) else None

        try:
            asked = wait_for(requests, timeout=60, what="the checkpoint request on every rank")
        except AssertionError:
            print(
                dump(cluster, namespace), yaml.safe_dump(cluster.get("workloads", "-n", namespace))
            )
            raise
        assert {r.reason for r in asked} == {"queue-eviction"} and len({r.id for r in asked}) == 1
        assert status(cluster, namespace, "low")["phase"] == "Checkpointing"
        assert not [e for e in log.of("high")], "the preemptor got pods before the commit"

        # Rank 0 commits the emergency checkpoint: the gang goes, `high` runs, `low` is queued.
        rank0 = next(p for p in low if p["metadata"]["labels"]["kubetrain.dev/rank"] == "0")
        cluster.kubectl(
            "annotate", "pod", rank0["metadata"]["name"], "-n", namespace, "--overwrite",
            f"{ANNOTATION_CHECKPOINT_COMMITTED}={_committed(4200, asked[0], '/fsx/ck')}",
        )  # fmt: skip
        high = running_pods(cluster, namespace, "high", attempt=1, n=2)
        st = wait_phase(cluster, namespace, "low", "Queued")
        assert st["checkpoint"]["step"] == 4200
        assert st["restarts"] == {"failures": 0, "interruptions": 0, "total": 0}
        assert get_tj(cluster, namespace) == {"high": "Running", "low": "Queued"}

        # `high` ends: `low` is admitted again and its next attempt resumes from step 4200.
        for pod in high:
            cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
        resumed = running_pods(cluster, namespace, "low", attempt=2, n=2)

    for pod in resumed:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env[ENV_RESUME_MANIFEST] == "/fsx/ck/step-4200.json"
    commit_seen = min(
        i
        for i, _, pod in log.of("low")
        if ANNOTATION_CHECKPOINT_COMMITTED in (pod["metadata"].get("annotations") or {})
    )
    high_first = min(i for i, _, _ in log.of("high"))
    assert high_first > commit_seen, "the preemptor's pods came before the preempted gang committed"
    low_attempt1_gone = max(
        i for i, kind, pod in log.of("low")
        if kind == "DELETED" and pod["metadata"]["labels"][LABEL_ATTEMPT] == "1"
    )  # fmt: skip
    assert high_first > low_attempt1_gone, (
        "the preemptor's pods came while the gang still held quota"
    )


def test_suspend_checkpoints_gives_the_quota_back_and_unsuspend_queues_again(
    cluster: Cluster, namespace: str, operator: KopfRunner, queue: str
) -> None:
    apply(cluster, namespace, queued_job("nap", queue))
    first = running_pods(cluster, namespace, "nap", attempt=1, n=2)
    apply(cluster, namespace, queued_job("next", queue))
    wait_phase(cluster, namespace, "next", "Queued")
    patch = '{"spec":{"suspend":%s}}'
    cluster.kubectl("patch", "tj", "nap", "-n", namespace, "--type=merge", "-p", patch % "true")

    def asked() -> list[CheckpointRequest] | None:
        found = [
            CheckpointRequest.decode(
                (cluster.get("pod", p["metadata"]["name"], "-n", namespace)["metadata"].get(
                    "annotations"
                ) or {}).get(ANNOTATION_CHECKPOINT_REQUEST)
            )
            for p in first
        ]  # fmt: skip
        return [r for r in found if r] if all(found) else None

    requests = wait_for(asked, timeout=30, what="the checkpoint request on both ranks")
    assert {r.reason for r in requests} == {"suspend"}
    rank0 = next(p for p in first if p["metadata"]["labels"]["kubetrain.dev/rank"] == "0")
    cluster.kubectl(
        "annotate", "pod", rank0["metadata"]["name"], "-n", namespace, "--overwrite",
        f"{ANNOTATION_CHECKPOINT_COMMITTED}={_committed(77, requests[0], '/fsx/nap')}",
    )  # fmt: skip
    wait_phase(cluster, namespace, "nap", "Suspended")
    assert workload(cluster, namespace, "nap")["spec"]["active"] is False
    # The suspended job's quota goes to the queued one.
    running_pods(cluster, namespace, "next", attempt=1, n=2)

    cluster.kubectl("patch", "tj", "nap", "-n", namespace, "--type=merge", "-p", patch % "false")
    wait_phase(cluster, namespace, "nap", "Queued")
    assert workload(cluster, namespace, "nap")["spec"]["active"] is True
    for pod in running_pods(cluster, namespace, "next", attempt=1, n=2):
        cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
    resumed = running_pods(cluster, namespace, "nap", attempt=2, n=2)
    env = {e["name"]: e.get("value") for e in resumed[0]["spec"]["containers"][0]["env"]}
    assert env[ENV_RESUME_MANIFEST] == "/fsx/nap/step-77.json"


def test_gang_larger_than_the_quota_waits_with_kueues_reason_and_an_edit_requeues_it(
    cluster: Cluster, namespace: str, operator: KopfRunner, queue: str
) -> None:
    apply(cluster, namespace, queued_job("wide", queue, nodes=3))  # 24 GPUs, the quota is 16
    st = wait_phase(cluster, namespace, "wide", "Queued")
    wait_for(
        lambda: (
            "nvidia.com/gpu"
            in condition(status(cluster, namespace, "wide"), "Admitted").get("message", "")
        ),
        timeout=30,
        what="Kueue's reason (GPU quota) in the Admitted condition",
    )
    before = workload(cluster, namespace, "wide")
    assert before["spec"]["podSets"][0]["count"] == 3
    cluster.kubectl(
        "patch", "tj", "wide", "-n", namespace, "--type=merge", "-p", '{"spec":{"nodes":2}}'
    )
    running_pods(cluster, namespace, "wide", attempt=1, n=2)
    after = workload(cluster, namespace, "wide")
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["podSets"][0]["count"] == 2
    assert st["attempt"] == 0


@pytest.mark.parametrize("queue", [{"gpus": 32}], indirect=True)
def test_admitted_gang_with_room_for_3_of_4_waits_gated_and_binds_no_pod_until_the_4th_node(
    cluster: Cluster,
    namespace: str,
    operator: KopfRunner,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kueue admits quota, not nodes (issue 11, levels 1 and 2 together): once admitted, the gang
    waits behind the kubetrain.dev/gang gate until its flavor's nodes in one zone have room."""
    # The p5 spot pool as a fixed pool (by default its Karpenter label lets the provisioner decide).
    monkeypatch.setenv(ENV_PROVISIONER_NODE_LABELS, "")
    last = "p5-spot-a3"
    cluster.cordon(last)  # room for 3 of the 4 in us-west-2a
    with PodLog(cluster, namespace) as log:
        apply(
            cluster,
            namespace,
            queued_job("quad", queue, nodes=4, capacity={"type": "spot", "zone": "us-west-2a"}),
        )
        try:
            st = wait_for(
                lambda: (
                    s
                    if condition(s := status(cluster, namespace, "quad"), "Ready").get("reason")
                    == "WaitingForCapacity"
                    else None
                ),
                timeout=60,
                what="the admitted gang waiting for capacity",
            )
        except AssertionError:
            print(dump(cluster, namespace), cluster.get("workloads", "-n", namespace))
            raise
        assert condition(st, "Admitted")["status"] == "True"
        assert "3 free in us-west-2a" in condition(st, "Ready")["message"]
        gated = [p for _, kind, p in log.of("quad") if kind == "ADDED"]
        assert len(gated) == 4
        for pod in gated:
            assert pod["spec"]["schedulingGates"] == [{"name": SCHEDULING_GATE_GANG}]
            assert pod["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"
        mark = len(log.events)
        cluster.kubectl("uncordon", last)
        running = running_pods(cluster, namespace, "quad", attempt=1, n=4)
    assert last in {p["spec"]["nodeName"] for p in running}
    assert not [
        p["metadata"]["name"]
        for i, _, p in log.of("quad")
        if i < mark and p["spec"].get("nodeName")
    ], "a pod of the gang was bound before the whole gang had room"
