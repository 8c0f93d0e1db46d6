"""manifests/base: in sync with crds/, applies cleanly, and its RBAC is enough to run a job.

The last test runs the operator with a token of the manifests' own ServiceAccount, so a missing
permission in the least-privilege ClusterRole fails here rather than on a user's cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kopf.testing import KopfRunner
from operator_harness import (
    admits_host_network,
    apply,
    job_manifest,
    refused_requests,
    running_pods,
    wait_phase,
)

from cluster import Cluster
from support import wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack"))
import sync_manifests  # noqa: E402


def test_manifests_rendered_from_the_chart_have_not_drifted() -> None:
    """The CRD copies, the kustomize bases and the EKS add-on schema come from the chart."""
    assert sync_manifests.main(["--check"]) == 0, "run: python hack/sync_manifests.py"


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[list[dict[str, object]]]:
    rendered = cluster.kubectl("kustomize", str(ROOT / "manifests" / "base")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "manifests" / "base")
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/trainingjobs.kubetrain.dev", "--timeout=60s"
    )
    yield docs
    # Never delete the CRDs here: other tests' jobs live in them.
    for kind in ("clusterrolebinding", "clusterrole"):
        cluster.kubectl("delete", kind, "kubetrain-operator", "--ignore-not-found", check=False)
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        cluster.kubectl(
            "delete", kind, "kubetrain-privileged-pod-templates", "--ignore-not-found", check=False
        )
    cluster.kubectl("delete", "namespace", "kubetrain-system", "--wait=false", check=False)


@pytest.mark.cluster
def test_base_renders_every_part_and_applies(installed: list[dict[str, object]]) -> None:
    kinds = sorted({str(d["kind"]) for d in installed})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    [deploy] = [d for d in installed if d["kind"] == "Deployment"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["command"] == ["kubetrain-operator"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--peering=kubetrain" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [role] = [d for d in installed if d["kind"] == "ClusterRole"]
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}  # type: ignore[attr-defined]
    assert "*" not in verbs


@pytest.mark.cluster
def test_operator_runs_a_job_with_only_the_manifests_rbac(
    cluster: Cluster,
    namespace: str,
    installed: list[dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = cluster.kubectl(
        "create", "token", "kubetrain-operator", "-n", "kubetrain-system", "--duration=1h"
    ).stdout.strip()
    kubeconfig = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    kubeconfig["users"] = [{"name": "operator", "user": {"token": token}}]
    for ctx in kubeconfig["contexts"]:
        ctx["context"]["user"] = "operator"
    path = tmp_path / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        apply(cluster, namespace, job_manifest("rbac", nodes=2))
        items = running_pods(cluster, namespace, "rbac", attempt=1, n=2)
        wait_phase(cluster, namespace, "rbac", "Running")
        for p in items:
            cluster.set_pod_outcome(namespace, p["metadata"]["name"], "Succeeded")
        wait_phase(cluster, namespace, "rbac", "Succeeded")
        events = cluster.get(
            "events", "-n", namespace, "--field-selector", "involvedObject.name=rbac"
        )
        assert {"AllRanksSucceeded"} <= {e["reason"] for e in events["items"]}
        cluster.kubectl("delete", "trainingjob", "rbac", "-n", namespace, "--timeout=60s")
        wait_for(
            lambda: cluster.get("pods", "-n", namespace)["items"] == [],
            timeout=60,
            what="pods gone",
        )
    assert runner.exception is None
    # Also no failed pass: a create sent before what the API server looks up for it fails too.
    refused = refused_requests(runner.output, "reconcile failed")
    assert not refused, "\n".join(refused)


@pytest.mark.cluster
def test_privileged_pod_templates_are_refused_at_apply(
    cluster: Cluster, namespace: str, installed: list[dict[str, object]]
) -> None:
    """The base's admission policy, evaluated by the real API server (allowing them, and a
    reinstall, are in test_chart_install.py)."""
    # A new policy takes the API server a moment to load: wait for the first refusal.
    wait_for(lambda: not admits_host_network(cluster, namespace), timeout=30, what="refused")
