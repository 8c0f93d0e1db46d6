"""The workers' identity, checked by the API server itself: a job's pods may read, watch and
annotate their own pods (the checkpoint protocol) and nothing of another job's.

The objects are exactly what kubetrain.build.build_rbac emits; the credentials are a real
ServiceAccount token from the TokenRequest API, as the kubelet would project into the pod.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from cluster import Cluster
from kubetrain.api.constants import LABEL_ATTEMPT, LABEL_JOB
from kubetrain.build import JobRef, build_rbac, pod_name, worker_service_account

pytestmark = pytest.mark.cluster


def bare_pod(job: str, attempt: int, rank: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(job, attempt, rank),
            "labels": {LABEL_JOB: job, LABEL_ATTEMPT: str(attempt)},
        },
        "spec": {
            "serviceAccountName": worker_service_account(job),
            "restartPolicy": "Never",
            "containers": [{"name": "worker", "image": "train:1"}],
        },
    }


def strip_owner(obj: dict[str, Any]) -> dict[str, Any]:
    """No TrainingJob object here: the owner reference would point at nothing."""
    obj["metadata"].pop("ownerReferences", None)
    return obj


def core_as(cluster: Cluster, namespace: str, job: str) -> Any:
    """A CoreV1Api authenticated as the job's worker ServiceAccount (TokenRequest API)."""
    return core_as_account(cluster, namespace, worker_service_account(job))


def core_as_account(cluster: Cluster, namespace: str, account: str) -> Any:
    """A CoreV1Api authenticated as a ServiceAccount (TokenRequest API)."""
    from kubernetes import client

    admin = cluster.api_client()
    token = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            account,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
            ),
        )
        .status.token
    )
    conf = client.Configuration()
    conf.host = admin.configuration.host
    conf.ssl_ca_cert = admin.configuration.ssl_ca_cert
    conf.verify_ssl = admin.configuration.verify_ssl
    conf.api_key = {"authorization": f"Bearer {token}"}
    return client.CoreV1Api(client.ApiClient(conf))


def status_of(call: Callable[[], Any]) -> int:
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_job_role_allows_own_pods_and_denies_other_jobs(cluster: Cluster, namespace: str) -> None:
    docs: list[dict[str, Any]] = []
    for job in ("alpha", "beta"):
        ref = JobRef(name=job, namespace=namespace, uid="unused")
        docs += [strip_owner(o) for o in build_rbac(ref, 1, 2)]
        docs += [bare_pod(job, 1, r) for r in range(2)]
    docs.append(bare_pod("alpha", 2, 0))  # a later attempt's pod: no Role names it yet
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))

    core = core_as(cluster, namespace, "alpha")
    own, peer = pod_name("alpha", 1, 0), pod_name("alpha", 1, 1)
    other = pod_name("beta", 1, 0)
    patch = {"metadata": {"annotations": {"kubetrain.dev/checkpoint-committed": '{"id": "x"}'}}}

    # Its own pods: read, annotate, and watch by name (what the checkpoint agent does).
    assert status_of(lambda: core.read_namespaced_pod(own, namespace)) == 200
    assert status_of(lambda: core.patch_namespaced_pod(own, namespace, patch)) == 200
    assert status_of(lambda: core.patch_namespaced_pod(peer, namespace, patch)) == 200
    assert (
        status_of(
            lambda: core.list_namespaced_pod(namespace, field_selector=f"metadata.name={own}")
        )
        == 200
    )
    annotations = cluster.get("pod", own, "-n", namespace)["metadata"]["annotations"]
    assert annotations["kubetrain.dev/checkpoint-committed"] == '{"id": "x"}'

    # Another job's pod, a pod its Role does not name, all pods, and anything but pods: denied.
    assert status_of(lambda: core.read_namespaced_pod(other, namespace)) == 403
    assert status_of(lambda: core.patch_namespaced_pod(other, namespace, patch)) == 403
    assert status_of(lambda: core.read_namespaced_pod(pod_name("alpha", 2, 0), namespace)) == 403
    assert status_of(lambda: core.list_namespaced_pod(namespace)) == 403
    assert status_of(lambda: core.delete_namespaced_pod(own, namespace)) == 403
    assert status_of(lambda: core.list_namespaced_secret(namespace)) == 403
    assert status_of(lambda: core.create_namespaced_pod(namespace, bare_pod("alpha", 9, 0))) == 403
    # The other job's identity is just as fenced in.
    beta = core_as(cluster, namespace, "beta")
    assert status_of(lambda: beta.read_namespaced_pod(other, namespace)) == 200
    assert status_of(lambda: beta.patch_namespaced_pod(own, namespace, patch)) == 403


def test_existing_service_account_is_bound_instead_of_a_per_job_one(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spec.serviceAccountName (e.g. IRSA-annotated): the pods run as it, the attempt's Role is
    bound to it, no `<job>-worker` account is made, and its token can answer checkpoint requests."""
    from kopf.testing import KopfRunner
    from operator_harness import apply, install_crd, job_manifest, running_pods

    install_crd(cluster)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "train-s3",
            "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/train"},
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(account))
    bad = job_manifest("bad-sa", serviceAccountName="Train_S3")
    refused = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad), check=False
    )
    assert refused.returncode != 0 and "spec.serviceAccountName" in refused.stderr

    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        apply(cluster, namespace, job_manifest("irsa", nodes=2, serviceAccountName="train-s3"))
        items = running_pods(cluster, namespace, "irsa", attempt=1, n=2)
        assert {p["spec"]["serviceAccountName"] for p in items} == {"train-s3"}
        binding = cluster.get("rolebinding", "irsa-1-worker", "-n", namespace)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "train-s3", "namespace": namespace}
        ]
        accounts = cluster.get("serviceaccounts", "-n", namespace)["items"]
        assert "irsa-worker" not in {a["metadata"]["name"] for a in accounts}
        core = core_as_account(cluster, namespace, "train-s3")
        own = pod_name("irsa", 1, 0)
        patch = {"metadata": {"annotations": {"kubetrain.dev/checkpoint-committed": '{"id": "y"}'}}}
        assert status_of(lambda: core.patch_namespaced_pod(own, namespace, patch)) == 200
        assert status_of(lambda: core.list_namespaced_pod(namespace)) == 403
        cluster.kubectl("delete", "trainingjob", "irsa", "-n", namespace, "--timeout=60s")
    assert runner.exception is None
    # The user's account outlives the job (it is theirs, not owned by the job).
    assert cluster.get("serviceaccount", "train-s3", "-n", namespace)["metadata"]["name"]
