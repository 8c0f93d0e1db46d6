"""The Helm chart: lints, rejects bad values naming the key, and renders what each value promises.

The kustomize bases and the EKS add-on schema are rendered from this chart by
hack/sync_manifests.py; test_operator_manifests.py checks they have not drifted.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from chart_harness import CHART, ROOT, helm, one, render

from kubetrain.config import ENV_PROVISIONER_NODE_LABELS

VALID = [
    [],
    ["--set", "watchNamespaces={team-a,team-b}"],
    ["--set", "nodeAgent.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"],
    ["--set", "replicas=3", "--set", "podDisruptionBudget.maxUnavailable=34%"],
    ["--set", "peering.enabled=false", "--set", "metrics.enabled=false"],
]


@pytest.mark.parametrize("values", VALID, ids=lambda v: " ".join(v) or "defaults")
def test_helm_lint_passes(values: list[str]) -> None:
    out = helm("lint", "--strict", str(CHART), *values)
    assert out.returncode == 0, out.stdout + out.stderr


# (value flags, the key the error must name)
BAD = [
    (["--set", "replicas=two"], "/replicas"),
    (["--set", "replicas=0"], "/replicas"),
    (["--set", "replicas=2", "--set", "peering.enabled=false"], "/replicas"),
    (["--set", "nodeAgent.enabld=true"], "enabld"),
    (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "image.repository="], "/image/repository"),
    (["--set", "resources.requests.memory=lots"], "/resources/requests/memory"),
    (["--set", "resources.requests.gpu=1"], "/resources/requests"),
    (["--set", "metrics.port=70000"], "/metrics/port"),
    (["--set", "health.port=http"], "/health/port"),
    (["--set", "logFormat=yaml"], "/logFormat"),
    (["--set-json", 'tolerations=[{"key":"a","operator":"Maybe"}]'], "/tolerations/0/operator"),
    (["--set", "podDisruptionBudget.maxUnavailable=half"], "/podDisruptionBudget/maxUnavailable"),
    (["--set", "metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"),
    (["--set", "nodeAgent.intervalSeconds=0"], "/nodeAgent/intervalSeconds"),
    (["--set", "peering.name=Kube_Train"], "/peering/name"),
    (["--set", "verbose=maybe"], "/verbose"),
    (["--set", "gangScheduling=kueue"], "/gangScheduling"),
    (["--set", "provisionerNodeLabels=karpenter.sh/nodepool"], "/provisionerNodeLabels"),
    (["--set", "unknownTopLevel=1"], "unknownTopLevel"),
]


@pytest.mark.parametrize(("values", "key"), BAD, ids=[" ".join(v) for v, _ in BAD])
def test_bad_values_fail_lint_and_install_naming_the_key(values: list[str], key: str) -> None:
    linted = helm("lint", str(CHART), *values)
    assert linted.returncode != 0
    assert key in linted.stdout + linted.stderr, linted.stdout + linted.stderr
    # `helm template` (and `helm install`, see test_chart_install.py) validate the same schema.
    rendered = helm("template", "kubetrain", str(CHART), *values)
    assert rendered.returncode != 0
    assert key in rendered.stderr, rendered.stderr


def test_defaults_render_a_restricted_cluster_wide_operator() -> None:
    docs = render()
    assert sorted({d["kind"] for d in docs}) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "kubetrain-operator:0.1.0"  # appVersion when no tag is set
    assert container["command"] == ["kubetrain-operator"]
    assert container["args"] == [
        "--peering=kubetrain",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-address=0.0.0.0:8081",
        "--log-format=json",
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Pod Security Standards "restricted".
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"] == deploy["spec"]["selector"]
    role = one(docs, "ClusterRole")
    rules = role["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    resources = {res for r in rules for res in r["resources"]}
    assert not resources & {"secrets", "pods/exec", "pods/attach", "configmaps", "nodes/proxy"}
    node_verbs = {v for r in rules if "nodes" in r["resources"] for v in r["verbs"]}
    assert node_verbs == {"list", "watch"}


def test_scheduling_values_reach_the_pod() -> None:
    docs = render(
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "nodeSelector.role=system",
        "--set-json",
        'tolerations=[{"key":"CriticalAddonsOnly","operator":"Exists"}]',
        "--set-json",
        'affinity={"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[]}}',
        "--set",
        "replicas=2",
        "--set",
        "image.tag=9.9",
        "--set",
        "image.repository=123.dkr.ecr.us-west-2.amazonaws.com/kubetrain-operator",
    )
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 2
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"role": "system"}
    assert pod["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    assert "podAntiAffinity" in pod["affinity"]
    image = pod["containers"][0]["image"]
    assert image == "123.dkr.ecr.us-west-2.amazonaws.com/kubetrain-operator:9.9"


def test_namespaced_watch_grants_roles_only_in_those_namespaces() -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}")
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert {s["namespace"] for b in bindings for s in b["subjects"]} == {"kubetrain-system"}
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    # Cluster-wide, only what is cluster-scoped by nature: no jobs, pods or RBAC objects.
    cluster_rules = one(docs, "ClusterRole", "kubetrain-operator")["rules"]
    assert {res for r in cluster_rules for res in r["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
        "nodes",
        "persistentvolumes",
        "priorityclasses",  # Kueue: a Workload's priority comes from the pods' PriorityClass
        "resourceflavors",  # Kueue: an admitted flavor's node labels and tolerations
        "storageclasses",
    }


def test_optional_parts_render_only_when_enabled() -> None:
    docs = render("--set", "nodeAgent.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")
    agent = one(docs, "DaemonSet", "kubetrain-node-agent")
    assert agent["spec"]["template"]["spec"]["hostNetwork"] is True
    assert one(docs, "ClusterRole", "kubetrain-node-agent")["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}
    ]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == (one(docs, "Service")["spec"]["selector"])
    off = render(
        "--set",
        "metrics.enabled=false",
        "--set",
        "podDisruptionBudget.enabled=false",
        "--set",
        "admissionPolicy.enabled=false",
    )
    kinds = {d["kind"] for d in off}
    assert not kinds & {
        "DaemonSet",
        "ServiceMonitor",
        "Service",
        "PodDisruptionBudget",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    # The setting stays: the operator reads it whether or not the policy is installed.
    assert one(off, "ConfigMap", "kubetrain-operator-config")["data"] == {
        "allowPrivilegedPods": "false"
    }
    container = one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in container
    assert not any(a.startswith("--metrics-address") for a in container["args"])


def test_allowing_privileged_pods_drops_the_policy_and_rolls_the_operator() -> None:
    default, allowed = render(), render("--set", "allowPrivilegedPods=true")
    for docs, value in ((default, "false"), (allowed, "true")):
        config = one(docs, "ConfigMap", "kubetrain-operator-config")
        assert config["data"] == {"allowPrivilegedPods": value}
        pod = one(docs, "Deployment")["spec"]["template"]
        assert pod["metadata"]["annotations"]["kubetrain.dev/allow-privileged-pods"] == value
    policies = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    assert [d["kind"] for d in default if d["kind"] in policies] == list(policies)
    assert not [d for d in allowed if d["kind"] in policies]


def test_gang_scheduling_mode_reaches_the_operator_only_when_forced() -> None:
    def env(*values: str) -> dict[str, Any]:
        container = one(render(*values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "KUBETRAIN_GANG_SCHEDULING" not in env()
    assert env("--set", "gangScheduling=native")["KUBETRAIN_GANG_SCHEDULING"] == "native"
    assert env("--set", "gangScheduling=kubetrain")["KUBETRAIN_GANG_SCHEDULING"] == "kubetrain"


def test_provisioner_node_labels_reach_the_operator_only_when_set() -> None:
    def env(*values: str) -> dict[str, Any]:
        container = one(render(*values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    key = ENV_PROVISIONER_NODE_LABELS
    assert key not in env()  # the operator's own default (karpenter.sh/nodepool)
    assert env("--set-json", "provisionerNodeLabels=[]")[key] == ""
    labels = "provisionerNodeLabels={karpenter.sh/nodepool,eks.amazonaws.com/nodegroup}"
    assert env("--set", labels)[key] == "karpenter.sh/nodepool,eks.amazonaws.com/nodegroup"


def test_crds_ship_in_the_chart() -> None:
    names = sorted(
        doc["metadata"]["name"]
        for path in (CHART / "crds").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    )
    assert names == [
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
        "trainingjobs.kubetrain.dev",
    ]


def test_eks_addon_schema_accepts_the_defaults_and_rejects_what_the_chart_rejects() -> None:
    schema = json.loads(
        (ROOT / "manifests" / "eks-addon" / "configuration-schema.json").read_text()
    )
    assert "$ref" not in json.dumps(schema)  # inlined: EKS reads it standalone
    assert "image" not in schema["properties"]  # EKS sets the add-on's image itself
    defaults: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults.pop("image")
    defaults.pop("imagePullSecrets")
    jsonschema.validate(defaults, schema)
    configuration = {"watchNamespaces": ["ml"], "nodeAgent": {"enabled": True}, "replicas": 2}
    jsonschema.validate(configuration, schema)
    with pytest.raises(jsonschema.ValidationError, match="enabld"):
        jsonschema.validate({"nodeAgent": {"enabld": True}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"replicas": 2, "peering": {"enabled": False}}, schema)
