"""Least privilege, proven: `helm install` the chart, run the operator as the chart's ServiceAccount.

The operator runs in this process (KopfRunner, the same module the image runs) with a kubeconfig
holding a TokenRequest token of the ServiceAccount the chart installed, so every API call it makes
is authorised by the chart's RBAC and nothing else. It drives a rank failure and a spot notice to
completion, the log must hold no 403, and `kubectl auth can-i --list` must show nothing beyond the
design's needs. The same for a namespace-scoped install. While the cluster-wide drill runs, the
metrics endpoint is scraped: the counters and histograms must move by exactly what happened.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import CHART, helm
from kopf.testing import KopfRunner
from operator_harness import (
    admits_host_network,
    apply,
    dump,
    job_manifest,
    live_pods,
    refused_requests,
    running_pods,
    status,
    wait_phase,
)
from prometheus_client.parser import text_string_to_metric_families

from cluster import Cluster
from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_COMMITTED,
    ANNOTATION_CHECKPOINT_REQUEST,
    ANNOTATION_RESUMED,
)
from support import free_port, wait_for

pytestmark = pytest.mark.cluster

RELEASE_NS = "kubetrain-chart"
SA = "kubetrain-operator"
SUBJECT = f"system:serviceaccount:{RELEASE_NS}:{SA}"
SPOT_TAINT = "aws-node-termination-handler/spot-itn"
# kopf's streams in a cluster-wide run: CRDs (discovery), peering, and ours (Kueue's Workloads
# too where Kueue's CRDs are installed, as test_kueue.py leaves them in the session's cluster).
WATCHED = "clusterkopfpeerings, customresourcedefinitions, nodes, pods, trainingjobs"


def watched(cluster: Cluster) -> str:
    kueue = cluster.kubectl("get", "crd", "workloads.kueue.x-k8s.io", check=False).returncode == 0
    return WATCHED + (", workloads" if kueue else "")


WRITES = {"create", "update", "patch", "delete", "deletecollection", "*"}
# Everything the operator may write, cluster-wide install (resource -> verbs).
DESIGN_WRITES = {
    "pods": {"create", "patch", "delete"},
    "services": {"create"},
    "serviceaccounts": {"create"},
    "persistentvolumeclaims": {"create"},
    "roles.rbac.authorization.k8s.io": {"create"},
    "rolebindings.rbac.authorization.k8s.io": {"create"},
    "events": {"create", "patch"},
    "events.events.k8s.io": {"create", "patch"},
    "podgroups.scheduling.k8s.io": {"create", "deletecollection"},
    "trainingjobs.kubetrain.dev": {"patch", "delete"},
    "trainingjobs.kubetrain.dev/status": {"patch"},
    "persistentvolumes": {"create", "deletecollection"},
    "storageclasses.storage.k8s.io": {"create", "deletecollection"},
    "clusterkopfpeerings.kopf.dev": {"create", "patch"},
    # Kueue's Workload of each job labelled kueue.x-k8s.io/queue-name.
    "workloads.kueue.x-k8s.io": {"create", "patch"},
    "workloads.kueue.x-k8s.io/status": {"patch"},
    # Every authenticated identity may ask what it may do (system:basic-user).
    "selfsubjectaccessreviews.authorization.k8s.io": {"create"},
    "selfsubjectrulesreviews.authorization.k8s.io": {"create"},
    "selfsubjectreviews.authentication.k8s.io": {"create"},
}
SELF_REVIEWS = {k for k in DESIGN_WRITES if k.startswith("selfsubject")}


def helm_env(cluster: Cluster) -> dict[str, str]:
    return cluster.env()


@pytest.fixture
def install(cluster: Cluster) -> Iterator[Any]:
    """helm install the chart (as a user would) with the given values; uninstall afterwards."""
    installed: list[str] = []

    def _install(*values: str) -> None:
        out = helm(
            "install",
            "kubetrain",
            str(CHART),
            "-n",
            RELEASE_NS,
            "--create-namespace",
            *values,
            env=helm_env(cluster),
        )
        assert out.returncode == 0, out.stdout + out.stderr
        installed.append("kubetrain")
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd/trainingjobs.kubetrain.dev", "--timeout=60s"
        )

    yield _install
    for release in installed:  # (already gone when the test uninstalled it itself)
        helm(
            "uninstall",
            release,
            "-n",
            RELEASE_NS,
            "--wait",
            "--ignore-not-found",
            env=helm_env(cluster),
        )
    # The release namespace stays (deleting it races the next test's install into it).


def operator_kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    """A kubeconfig authenticated as the chart's ServiceAccount (TokenRequest, as a pod gets)."""
    token = cluster.kubectl("create", "token", SA, "-n", RELEASE_NS, "--duration=1h").stdout.strip()
    kubeconfig = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    kubeconfig["users"] = [{"name": "operator", "user": {"token": token}}]
    for ctx in kubeconfig["contexts"]:
        ctx["context"]["user"] = "operator"
    path = tmp_path / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def can_i_list(cluster: Cluster, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` for the chart's account: resource -> verbs."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={SUBJECT}", "-n", namespace).stdout
    rules: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        if not line.strip() or line.lstrip().startswith("/"):
            continue  # non-resource URLs (/api, /healthz...) granted to every identity
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        rules.setdefault(resource, set()).update(verbs)
    return rules


def writes(rules: dict[str, set[str]]) -> dict[str, set[str]]:
    return {r: v & WRITES for r, v in rules.items() if v & WRITES}


def assert_no_sensitive_access(rules: dict[str, set[str]]) -> None:
    for forbidden in ("secrets", "pods/exec", "pods/attach", "pods/portforward", "nodes/proxy"):
        assert forbidden not in rules, f"the chart's account may {rules[forbidden]} {forbidden}"
    assert "*" not in rules and "*.*" not in rules
    assert all("*" not in verbs for verbs in rules.values()), rules


def denied(cluster: Cluster, verb: str, resource: str, namespace: str, *extra: str) -> bool:
    proc = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, f"--as={SUBJECT}", "-n", namespace, check=False
    )
    assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
    return proc.stdout.strip() == "no"


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint as {'name{label="v",...}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def rank_failure(cluster: Cluster, ns: str, job: str) -> None:
    """Rank 1 of attempt 1 exits 1: the whole gang comes back as attempt 2."""
    running_pods(cluster, ns, job, attempt=1, n=2)
    wait_phase(cluster, ns, job, "Running")
    cluster.set_pod_outcome(ns, f"{job}-1-1", "Failed", exit_code=1)
    running_pods(cluster, ns, job, attempt=2, n=2)
    wait_phase(cluster, ns, job, "Running")


def spot_notice(cluster: Cluster, ns: str, job: str, attempt: int) -> None:
    """NTH taints rank 0's node; the gang gets a request, rank 0 commits, attempt+1 resumes."""
    [rank0] = [
        p for p in live_pods(cluster, ns, job, attempt) if p["metadata"]["name"].endswith("-0")
    ]
    cluster.taint_node(rank0["spec"]["nodeName"], SPOT_TAINT, "e1")

    def requested() -> dict[str, Any] | None:
        pod = cluster.get("pod", rank0["metadata"]["name"], "-n", ns)
        raw = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_CHECKPOINT_REQUEST)
        return json.loads(raw) if raw else None

    request = wait_for(requested, timeout=60, interval=0.2, what="checkpoint request on rank 0")
    commit = {
        "id": request["id"],
        "step": 40,
        "manifest": f"/fsx/checkpoints/{job}/manifests/step-000000000040-x.json",
        "kind": "emergency",
    }
    cluster.kubectl(
        "annotate",
        "pod",
        rank0["metadata"]["name"],
        "-n",
        ns,
        "--overwrite",
        f"{ANNOTATION_CHECKPOINT_COMMITTED}={json.dumps(commit)}",
    )
    running_pods(cluster, ns, job, attempt=attempt + 1, n=2)
    wait_phase(cluster, ns, job, "Running")
    # Rank 0 of the new attempt restored step 40; the interrupted one had reached step 47.
    resumed = {"step": 40, "previousStep": 47, "lostSteps": 7, "manifest": commit["manifest"]}
    cluster.kubectl(
        "annotate",
        "pod",
        f"{job}-{attempt + 1}-0",
        "-n",
        ns,
        "--overwrite",
        f"{ANNOTATION_RESUMED}={json.dumps(resumed)}",
    )

    def lost_steps() -> bool:
        entries = status(cluster, ns, job).get("interruptions") or []
        return any(e.get("lostSteps") == 7 for e in entries)

    wait_for(lost_steps, timeout=30, what="lostSteps 7 on the interruption")


def finish(cluster: Cluster, ns: str, job: str, attempt: int) -> None:
    for pod in live_pods(cluster, ns, job, attempt):
        cluster.set_pod_outcome(ns, pod["metadata"]["name"], "Succeeded")
    wait_phase(cluster, ns, job, "Succeeded")


def test_cluster_wide_install_runs_drills_as_its_service_account_with_metrics(
    cluster: Cluster,
    namespace: str,
    install: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install()
    # What the account may do, as the API server sees it: no Secrets, no exec, and writes exactly
    # the design's (children of jobs, job status, events, static FSx PVs, the peering object).
    rules = can_i_list(cluster, namespace)
    assert_no_sensitive_access(rules)
    assert writes(rules) == DESIGN_WRITES, writes(rules)
    assert denied(cluster, "get", "secrets", namespace)
    assert denied(cluster, "create", "pods", namespace, "--subresource=exec")
    assert denied(cluster, "patch", "nodes", "default")
    assert denied(cluster, "create", "clusterroles", "default")

    port = free_port()
    monkeypatch.setenv("KUBECONFIG", str(operator_kubeconfig(cluster, tmp_path)))
    monkeypatch.setenv("KUBETRAIN_METRICS_ADDRESS", f"127.0.0.1:{port}")
    # As the Deployment runs it: cluster-wide, peering through the chart's ClusterKopfPeering.
    args = ["run", "--all-namespaces", "--peering=kubetrain", "-m", "kubetrain.handlers"]
    job = "drill"
    with KopfRunner(args, timeout=90) as runner:
        # Ready as the active replica: every watch listed (not the brief peering standby).
        streams = watched(cluster)
        wait_for(
            lambda: readyz(port) == (200, f"watching: {streams}\n") or None,
            timeout=60,
            interval=0.2,
            what=f"/readyz 200 watching {streams}",
        )
        before = scrape(port)
        assert before["kubetrain_ready{}"] == 1
        assert before['kubetrain_watch_up{resource="trainingjobs"}'] == 1
        try:
            apply(cluster, namespace, job_manifest(job, nodes=2))
            rank_failure(cluster, namespace, job)
            spot_notice(cluster, namespace, job, attempt=2)
            mid = scrape(port)
            assert mid['kubetrain_jobs{phase="Running"}'] >= 1
            assert (
                mid.get(
                    f'kubetrain_checkpoint_age_seconds{{job="{job}",namespace="{namespace}"}}', -1
                )
                >= 0
            )
            finish(cluster, namespace, job, attempt=3)
            after = wait_for(
                lambda: (
                    (s := scrape(port))
                    and s.get('kubetrain_jobs_finished_total{phase="Succeeded"}', 0)
                    > before.get('kubetrain_jobs_finished_total{phase="Succeeded"}', 0)
                    and s
                ),
                timeout=30,
                what="finished counter",
            )
        except Exception:
            print(dump(cluster, namespace))
            raise
        finally:
            cluster.kubectl(
                "delete", "trainingjob", job, "-n", namespace, "--timeout=60s", check=False
            )
    assert runner.exception is None, runner.output[-3000:]
    assert not refused_requests(runner.output), "\n".join(refused_requests(runner.output))

    # The drill in numbers: 3 attempts, 1 restart per budget, 1 spot interruption from NTH's
    # taint, answered (request and commit latency observed once each), one emergency checkpoint.
    assert delta(after, before, "kubetrain_attempts_started_total{}") == 3
    assert delta(after, before, 'kubetrain_restarts_total{reason="failure"}') == 1
    assert delta(after, before, 'kubetrain_restarts_total{reason="interruption"}') == 1
    assert delta(after, before, f'kubetrain_interruptions_total{{source="{SPOT_TAINT}"}}') == 1
    for hist in ("notice_to_request", "notice_to_commit"):
        name = f"kubetrain_interruption_{hist}_seconds"
        assert delta(after, before, f"{name}_count{{}}") == 1
        assert 0 <= delta(after, before, f"{name}_sum{{}}") < 60
        assert delta(after, before, f'{name}_bucket{{le="+Inf"}}') == 1
    assert delta(after, before, 'kubetrain_checkpoints_committed_total{kind="emergency"}') == 1
    assert delta(after, before, "kubetrain_lost_steps_total{}") == 7
    assert delta(after, before, 'kubetrain_jobs_finished_total{phase="Succeeded"}') == 1
    assert delta(after, before, "kubetrain_reconcile_duration_seconds_count{}") >= 5
    # Bounded cardinality: no pod or node name in any series.
    assert not [k for k in after if f"{job}-1-" in k or "p5-" in k]


def test_namespaced_install_runs_drills_with_roles_in_that_namespace_only(
    cluster: Cluster,
    namespace: str,
    install: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bad value is refused by `helm install` itself, naming the key, before anything is created.
    refused = helm(
        "install",
        "kubetrain",
        str(CHART),
        "-n",
        RELEASE_NS,
        "--set",
        "replicas=zero",
        env=helm_env(cluster),
    )
    assert refused.returncode != 0 and "/replicas" in refused.stderr, refused.stderr
    install("--set", f"watchNamespaces={{{namespace}}}")
    rules = can_i_list(cluster, namespace)
    assert_no_sensitive_access(rules)
    expected = {k: v for k, v in DESIGN_WRITES.items() if k != "clusterkopfpeerings.kopf.dev"}
    expected["kopfpeerings.kopf.dev"] = {"patch"}  # leader election, in this namespace only
    assert writes(rules) == expected, writes(rules)
    # Anywhere else: nothing namespaced to write, only the cluster-scoped FSx volumes and classes.
    elsewhere = writes(can_i_list(cluster, "default"))
    assert set(elsewhere) - SELF_REVIEWS == {
        "persistentvolumes",
        "storageclasses.storage.k8s.io",
    }, elsewhere
    assert denied(cluster, "create", "pods", "default")
    assert denied(cluster, "list", "trainingjobs.kubetrain.dev", "default")

    monkeypatch.setenv("KUBECONFIG", str(operator_kubeconfig(cluster, tmp_path)))
    args = ["run", f"--namespace={namespace}", "--peering=kubetrain", "-m", "kubetrain.handlers"]
    job = "nsdrill"
    with KopfRunner(args, timeout=90) as runner:
        try:
            apply(cluster, namespace, job_manifest(job, nodes=2))
            rank_failure(cluster, namespace, job)
            spot_notice(cluster, namespace, job, attempt=2)
            finish(cluster, namespace, job, attempt=3)
        except Exception:
            print(dump(cluster, namespace))
            raise
        finally:
            cluster.kubectl(
                "delete", "trainingjob", job, "-n", namespace, "--timeout=60s", check=False
            )
    assert runner.exception is None, runner.output[-3000:]
    assert not refused_requests(runner.output), "\n".join(refused_requests(runner.output))


def test_node_agent_lands_on_spot_nodes_and_upgrade_and_uninstall_clean_up(
    cluster: Cluster, install: Any
) -> None:
    install("--set", "nodeAgent.enabled=true")
    spot_nodes = cluster.get("nodes", "-l", "karpenter.sh/capacity-type=spot")["items"]
    managed_spot = cluster.get("nodes", "-l", "eks.amazonaws.com/capacityType=SPOT")["items"]
    expected = len({n["metadata"]["name"] for n in spot_nodes + managed_spot})
    assert expected > 0

    def scheduled() -> int | None:
        ds = cluster.get("daemonset", "kubetrain-node-agent", "-n", RELEASE_NS)
        n = (ds.get("status") or {}).get("desiredNumberScheduled")
        return n if n == expected else None

    wait_for(scheduled, timeout=60, what=f"node agent desired on {expected} spot nodes")
    pods = cluster.get(
        "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/name=kubetrain-node-agent"
    )
    spot_names = {n["metadata"]["name"] for n in spot_nodes + managed_spot}
    assert {p["spec"].get("nodeName") for p in pods["items"]} <= spot_names | {None}

    # helm upgrade turns it off again; helm uninstall leaves nothing cluster-scoped but the CRDs.
    upgraded = helm(
        "upgrade",
        "kubetrain",
        str(CHART),
        "-n",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        "nodeAgent.enabled=false",
        env=helm_env(cluster),
    )
    assert upgraded.returncode == 0, upgraded.stderr
    gone = cluster.kubectl(
        "get", "daemonset", "kubetrain-node-agent", "-n", RELEASE_NS, check=False
    )
    assert gone.returncode != 0
    removed = helm("uninstall", "kubetrain", "-n", RELEASE_NS, "--wait", env=helm_env(cluster))
    assert removed.returncode == 0, removed.stderr
    for kind in ("clusterrole", "clusterrolebinding"):
        names = [i["metadata"]["name"] for i in cluster.get(kind)["items"]]
        assert not [n for n in names if n.startswith("kubetrain-")], names
    assert cluster.kubectl("get", "crd", "trainingjobs.kubetrain.dev", check=False).returncode == 0


def test_privileged_pod_templates_stay_refused_across_upgrades_and_a_reinstall(
    cluster: Cluster, namespace: str, install: Any
) -> None:
    """The admin's switch is the Helm value; a reinstall must not leave the API server admitting
    what the policy refuses (the failure mode of a ConfigMap-param policy: Kubernetes 130887)."""

    def upgrade(allow: str) -> None:
        out = helm(
            "upgrade", "kubetrain", str(CHART), "-n", RELEASE_NS, "--reuse-values",
            "--set", f"allowPrivilegedPods={allow}", env=helm_env(cluster),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr

    def refused() -> bool:
        return not admits_host_network(cluster, namespace)

    install()
    wait_for(refused, timeout=30, what="refused after install")
    upgrade("true")
    wait_for(lambda: admits_host_network(cluster, namespace), timeout=30, what="allowed")
    config = cluster.get("configmap", "kubetrain-operator-config", "-n", RELEASE_NS)
    assert config["data"] == {"allowPrivilegedPods": "true"}
    upgrade("false")
    wait_for(refused, timeout=30, what="refused after the upgrade back")
    removed = helm("uninstall", "kubetrain", "-n", RELEASE_NS, "--wait", env=helm_env(cluster))
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: admits_host_network(cluster, namespace), timeout=30, what="uninstalled")
    install()
    wait_for(refused, timeout=30, what="refused after the reinstall")
