"""Issue 9's acceptance test: 150+ invalid or hostile TrainingJobs against the real API server with
the operator running. Each one is refused at apply naming the field, or ends Failed/InvalidSpec
naming it, and nothing loops: the operator's log has no reconcile error and no job carries a
ReconcileError condition. Also: API rejections of children surface the server's message, repeated
errors back off with a ReconcileError condition that clears, a spec too large for kopf's
annotation stays deletable, and spot jobs without a durable checkpoint get a Warning condition.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from operator_harness import condition, dump, install_crd, pods, reasons, status

from cluster import Cluster
from kubetrain.api import constants as c
from support import wait_for

pytestmark = pytest.mark.cluster

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden"
INVALID = yaml.safe_load((GOLDEN / "invalid_specs.yaml").read_text())
UNRUNNABLE = yaml.safe_load((GOLDEN / "unrunnable_specs.yaml").read_text())
RUNNABLE_BASE: dict[str, Any] = {
    "image": "registry.example/train:1",
    "command": ["python", "train.py"],
    "accelerator": {"kind": "none"},
    "resources": {"cpu": "1", "memory": "1Gi"},
    "failurePolicy": {"maxRestarts": 0, "backoffSeconds": 0},
}
RECONCILE_ERROR_LOG = "reconcile failed"


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Specs the schema admits whose pods the API server then rejects: the operator must end them
# Failed/InvalidSpec with the server's message, once (no retry loop).
REJECTED_CHILDREN = [
    {
        "name": "child-bad-label-key",
        "spec": {"podTemplate": {"metadata": {"labels": {"bad key!": "x"}}}},
        "server": "metadata.labels",
    },
    {
        "name": "child-mount-of-missing-volume",
        "spec": {
            "podTemplate": {
                "spec": {
                    "containers": [
                        {"name": "worker", "volumeMounts": [{"name": "nope", "mountPath": "/nope"}]}
                    ]
                }
            }
        },
        "server": "volumeMounts",
    },
    {
        "name": "child-sidecar-without-image",
        "spec": {"podTemplate": {"spec": {"containers": [{"name": "worker"}, {"name": "side"}]}}},
        "server": "image",
    },
    {
        "name": "child-bad-node-selector",
        "spec": {"podTemplate": {"spec": {"nodeSelector": {"bad key!": "x"}}}},
        "server": "nodeSelector",
    },
    {
        "name": "child-negative-priority-port",
        "spec": {
            "podTemplate": {
                "spec": {"containers": [{"name": "worker", "ports": [{"containerPort": 70000}]}]}
            }
        },
        "server": "containerPort",
    },
]

# Valid specs near the edges: they must run (pods created), not fail.
RUNNABLE = [
    {
        "name": "ok-user-template",
        "spec": {
            "podTemplate": {
                "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "env": [{"name": "HF_HOME", "value": "/scratch/hf"}],
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                        },
                        {
                            "name": "logger",
                            "image": "busybox",
                            "env": [{"name": "LEVEL", "value": "info"}],
                        },
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                    "tolerations": [{"key": "team", "operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "priorityClassName": "",
                },
            },
            "checkpoint": {"dir": "/scratch/ckpt"},
        },
    },
    {
        "name": "ok-quantity-forms",
        "spec": {
            "resources": {"cpu": "500m", "memory": 1073741824},
            "storage": {"sharedMemory": "128Mi"},
        },
    },
    {
        "name": "ok-image-digest",
        "spec": {"image": "registry.example/train@sha256:0123456789abcdef"},
    },
    {
        "name": "ok-bucket-dots",
        "spec": {"checkpoint": {"s3Uri": "s3://my.training-bucket.v2/ckpt"}},
    },
    {
        "name": "ok-command-empty-arg",
        "spec": {"command": ["python", "train.py", ""], "launcher": "none"},
    },
]
for case in RUNNABLE:
    case["spec"].get("podTemplate", {}).get("spec", {}).pop("priorityClassName", None)


def table() -> list[dict[str, Any]]:
    """Every case with its manifest, the expected outcome (refused | failed) and the field."""
    rows: list[dict[str, Any]] = []
    for case in INVALID["cases"]:
        spec = _merge(INVALID["base"], case.get("spec", {}))
        for key in case.get("remove", []):
            spec.pop(key)
        layers = case.get("layers", ["parse", "apiserver"])
        rows.append(
            {
                "name": case.get("metadataName", f"i-{case['name']}"[:52].rstrip("-")),
                "spec": spec,
                # Parse-only cases are the privileged ones: refused at apply where the admission
                # policy (the chart's templates/admission.yaml) is installed, else Failed at reconcile.
                "expect": "refused" if "apiserver" in layers else "either",
                "field": case["field"],
            }
        )
    for case in UNRUNNABLE["cases"]:
        rows.append(
            {
                "name": f"u-{case['name']}"[:52].rstrip("-"),
                "spec": _merge(UNRUNNABLE["base"], case["spec"]),
                "expect": "refused" if case.get("atApply") else "failed",
                "field": case["field"],
            }
        )
    for case in REJECTED_CHILDREN:
        rows.append(
            {
                "name": f"r-{case['name']}"[:52].rstrip("-"),
                "spec": _merge(RUNNABLE_BASE, case["spec"]),
                "expect": "failed",
                "field": "spec.podTemplate",
                "server": case["server"],
            }
        )
    return rows


def _field_in(field: str, message: str) -> bool:
    """Rule messages write list items as `[]`; the server's own prefix has the index."""
    plain = re.sub(r"\[\d+\]", "[]", field)
    return field in message or plain in re.sub(r"\[\d+\]", "[]", message)


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    install_crd(cluster)


class LogLines(logging.Handler):
    """The operator's log lines as they happen (KopfRunner's output is readable only after exit)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


@pytest.fixture
def oplog() -> Iterator[LogLines]:
    handler = LogLines()
    logger = logging.getLogger("kopf")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def operator(
    cluster: Cluster, namespace: str, crd: None, monkeypatch: pytest.MonkeyPatch, oplog: LogLines
) -> Iterator[KopfRunner]:
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    monkeypatch.delenv("KUBETRAIN_ALLOW_PRIVILEGED_PODS", raising=False)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with KopfRunner(args, timeout=120) as runner:
        try:
            yield runner
        finally:
            cluster.kubectl(
                "delete", "trainingjobs", "--all", "-n", namespace, "--timeout=120s", check=False
            )
    assert runner.exception is None, runner.output[-4000:]


def _create(api: Any, ns: str, name: str, spec: Any) -> dict[str, Any]:
    from kubernetes import client

    body = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.PLURAL, body, field_validation="Strict"
    )
    return created


def _jobs(api: Any, ns: str) -> dict[str, dict[str, Any]]:
    from kubernetes import client

    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.PLURAL
    )["items"]
    return {j["metadata"]["name"]: j for j in items}


def test_hostile_table_refused_or_failed_naming_the_field_without_retry_loops(
    cluster: Cluster, namespace: str, operator: KopfRunner, oplog: LogLines
) -> None:
    from kubernetes import client

    api = cluster.api_client()
    rows = table()
    assert len(rows) >= 150, len(rows)
    assert len({r["name"] for r in rows}) == len(rows)
    accepted: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for row in rows:
        try:
            _create(api, namespace, row["name"], row["spec"])
        except client.ApiException as exc:
            message = json.loads(exc.body)["message"]
            if row["expect"] == "failed":
                problems.append(f"{row['name']}: refused at apply, expected Failed: {message}")
            elif exc.status not in (400, 422) or not _field_in(row["field"], message):
                problems.append(f"{row['name']}: refused without naming {row['field']}: {message}")
            continue
        if row["expect"] == "refused":
            problems.append(f"{row['name']}: accepted, expected refused naming {row['field']}")
            continue
        accepted[row["name"]] = row
    ok = [case["name"] for case in RUNNABLE]
    for case in RUNNABLE:
        _create(api, namespace, case["name"], _merge(RUNNABLE_BASE, case["spec"]))

    def all_settled() -> dict[str, dict[str, Any]] | None:
        jobs = _jobs(api, namespace)
        done = all(
            (jobs.get(n, {}).get("status") or {}).get("phase") == "Failed" for n in accepted
        ) and all((jobs.get(n, {}).get("status") or {}).get("attempt") for n in ok)
        return jobs if done else None

    try:
        jobs = wait_for(all_settled, timeout=180, interval=1.0, what="every accepted job settled")
    except AssertionError:
        jobs = _jobs(api, namespace)
        problems += [
            f"{n}: phase {(jobs.get(n, {}).get('status') or {}).get('phase')}"
            for n in accepted
            if (jobs.get(n, {}).get("status") or {}).get("phase") != "Failed"
        ]
        problems += [
            f"{n}: never started" for n in ok if not (jobs[n].get("status") or {}).get("attempt")
        ]
    for name, row in accepted.items():
        st = jobs.get(name, {}).get("status") or {}
        failed = condition(st, "Failed")
        if failed.get("reason") != "InvalidSpec" or not _field_in(
            row["field"], failed.get("message", "")
        ):
            problems.append(f"{name}: Failed {failed} does not name {row['field']}")
        if "server" in row and row["server"] not in failed.get("message", ""):
            problems.append(f"{name}: the API server's message is missing: {failed}")
        if not row.get("server") and pods(cluster, namespace, name):
            problems.append(f"{name}: pods were created for an invalid spec")
    for name in ok:
        st = jobs[name].get("status") or {}
        if st.get("phase") == "Failed":
            problems.append(f"{name}: a valid spec failed: {condition(st, 'Failed')}")
    # No retry loop: the jobs stay put, nothing logs a reconcile error, nobody is in ReconcileError.
    before = {n: jobs[n]["metadata"]["resourceVersion"] for n in accepted if n in jobs}
    time.sleep(6)
    after = _jobs(api, namespace)
    looping = [n for n, rv in before.items() if after[n]["metadata"]["resourceVersion"] != rv]
    assert not looping, f"jobs still being written after they failed: {looping}"
    erroring = [
        n
        for n, j in after.items()
        if condition(j.get("status") or {}, "ReconcileError").get("status") == "True"
    ]
    errors = oplog.count(RECONCILE_ERROR_LOG)
    if problems or erroring or errors:
        print(dump(cluster, namespace)[-6000:])
        print("\n".join(oplog.lines[-200:]))
    assert not problems, "\n".join(problems)
    assert not erroring, erroring
    assert errors == 0, f"{errors} reconcile errors in the operator log"
    for name in (r["name"] for r in rows if "server" in r):
        assert "InvalidSpec" in reasons(cluster, namespace, name)


def test_repeated_error_backs_off_with_condition_and_clears(
    cluster: Cluster, namespace: str, operator: KopfRunner, oplog: LogLines
) -> None:
    """A quota that forbids pods: the create fails the same way each pass (403, not the spec's
    fault). The job gets ReconcileError with the server's message and an Event; the failures back
    off; once the quota goes the condition turns False and the gang starts."""
    api = cluster.api_client()
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(quota))
    _create(api, namespace, "quota", RUNNABLE_BASE)

    def erroring() -> dict[str, Any] | None:
        cond = condition(status(cluster, namespace, "quota"), "ReconcileError")
        return cond if cond.get("status") == "True" else None

    cond = wait_for(erroring, timeout=60, interval=0.5, what="ReconcileError condition")
    assert "exceeded quota" in cond["message"] or "forbidden" in cond["message"], cond
    wait_for(lambda: "ReconcileError" in reasons(cluster, namespace, "quota"), timeout=30)
    failures = oplog.count(RECONCILE_ERROR_LOG)
    assert failures >= 2
    time.sleep(8)
    # Backoff 5, 10, 20 s...: a few more failures at most, not one every 5 s.
    assert oplog.count(RECONCILE_ERROR_LOG) <= failures + 2
    # Rate-limited: an Event on the 2nd, 4th, 8th... failure in a row, not on every one.
    failures = oplog.count(RECONCILE_ERROR_LOG)
    events = reasons(cluster, namespace, "quota").count("ReconcileError")
    assert 1 <= events <= max(1, failures.bit_length() - 1), (events, failures)
    cluster.kubectl("delete", "resourcequota", "no-pods", "-n", namespace)

    def cleared() -> dict[str, Any] | None:
        st = status(cluster, namespace, "quota")
        cond = condition(st, "ReconcileError")
        return st if cond.get("status") == "False" and pods(cluster, namespace, "quota") else None

    st = wait_for(cleared, timeout=90, interval=1.0, what="ReconcileError cleared")
    assert condition(st, "ReconcileError")["reason"] == "Recovered"
    assert st.get("phase") != "Failed"


def test_spec_too_large_for_an_annotation_runs_and_is_deleted(
    cluster: Cluster, namespace: str, operator: KopfRunner, oplog: LogLines
) -> None:
    """~300 KiB of env values: kopf's last-handled-configuration annotation would exceed 256 KiB
    (endless patch errors, the finalizer never removed). The operator stores no such copy."""
    api = cluster.api_client()
    env = [{"name": f"BIG_{i}", "value": "x" * 30000} for i in range(10)]
    _create(api, namespace, "big", {**RUNNABLE_BASE, "env": env})
    wait_for(lambda: pods(cluster, namespace, "big"), timeout=60, what="pods of the big job")
    job = cluster.get("trainingjob", "big", "-n", namespace)
    annotations = job["metadata"].get("annotations") or {}
    assert sum(len(v) for v in annotations.values()) < 16 * 1024, list(annotations)
    cluster.kubectl("delete", "trainingjob", "big", "-n", namespace, "--wait=false")
    wait_for(
        lambda: (
            cluster.kubectl("get", "trainingjob", "big", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=60,
        what="the big job deleted (finalizer released)",
    )
    assert oplog.count(RECONCILE_ERROR_LOG) == 0


def test_spot_job_without_durable_checkpoint_gets_a_warning(
    cluster: Cluster, namespace: str, operator: KopfRunner, oplog: LogLines
) -> None:
    api = cluster.api_client()
    _create(api, namespace, "spot-nockpt", {**RUNNABLE_BASE, "capacity": {"type": "spot"}})
    _create(
        api,
        namespace,
        "spot-s3",
        {**RUNNABLE_BASE, "capacity": {"type": "spot"}, "checkpoint": {"s3Uri": "s3://bucket/x"}},
    )

    def warned() -> dict[str, Any] | None:
        cond = condition(status(cluster, namespace, "spot-nockpt"), "SpecWarning")
        return cond if cond.get("status") == "True" else None

    cond = wait_for(warned, timeout=60, interval=0.5, what="SpecWarning on spot-nockpt")
    assert cond["reason"] == "NoDurableCheckpoint" and "spec.checkpoint" in cond["message"]
    wait_for(
        lambda: "NoDurableCheckpoint" in reasons(cluster, namespace, "spot-nockpt"), timeout=30
    )
    wait_for(lambda: status(cluster, namespace, "spot-s3").get("attempt"), timeout=60)
    assert condition(status(cluster, namespace, "spot-s3"), "SpecWarning").get("status") != "True"
    assert status(cluster, namespace, "spot-nockpt").get("phase") != "Failed"
