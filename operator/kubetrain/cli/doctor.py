"""`kubetrain doctor`: is this cluster ready for TrainingJobs? Each finding says how to fix it.

Reads only: the CRD, the operator Deployment, the nodes jobs target (device plugins and EFA
advertised as allocatable resources, placement labels), and the sources of spot notices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetrain.api.constants import GROUP, OPERATOR_NAMESPACE, PLURAL, VERSION
from kubetrain.profiles import InstanceProfile, lookup

OK, WARN, FAIL = "ok", "warn", "fail"
CRD_NAME = f"{PLURAL}.{GROUP}"
OPERATOR_DEPLOYMENT = "kubetrain-operator"
NODE_AGENT_DAEMONSET = "kubetrain-node-agent"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
KARPENTER_CAPACITY = "karpenter.sh/capacity-type"
EKS_CAPACITY = "eks.amazonaws.com/capacityType"
RESOURCE = {"nvidia": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}
EFA = "vpc.amazonaws.com/efa"
PLUGIN_FIX = {
    "nvidia": "install the NVIDIA device plugin on these nodes (the nvidia-device-plugin "
    "DaemonSet or the NVIDIA GPU Operator; the EKS accelerated AMIs carry the driver)",
    "neuron": "install the Neuron device plugin (helm oci://public.ecr.aws/neuron/neuron-helm-chart"
    " with devicePlugin.enabled=true)",
}
EFA_FIX = (
    "install the EFA device plugin (helm repo add eks https://aws.github.io/eks-charts; helm "
    "install aws-efa-k8s-device-plugin eks/aws-efa-k8s-device-plugin -n kube-system) and launch "
    "the nodes with EFA interfaces"
)


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | warn | fail
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


def _get(call: Any, *args: Any) -> dict[str, Any] | None:
    """Raw JSON of a read, None on 404."""
    import json

    from kubernetes.client.exceptions import ApiException

    try:
        resp = call(*args, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    out: dict[str, Any] = json.loads(resp.data)
    return out


def check_crd(ext: Any) -> Finding:
    crd = _get(ext.read_custom_resource_definition, CRD_NAME)
    fix = "kubectl apply --server-side -k manifests/base   (or the kubetrain EKS add-on)"
    if crd is None:
        return Finding("crd", FAIL, f"CustomResourceDefinition {CRD_NAME} is not installed", fix)
    served = [v["name"] for v in crd["spec"].get("versions", []) if v.get("served")]
    established = any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or []
    )
    if VERSION not in served:
        return Finding("crd", FAIL, f"{CRD_NAME} does not serve {VERSION} (serves {served})", fix)
    if not established:
        return Finding("crd", FAIL, f"{CRD_NAME} is not Established yet", fix)
    return Finding("crd", OK, f"{CRD_NAME} serves {', '.join(served)}")


def check_operator(apps: Any) -> Finding:
    dep = _get(apps.read_namespaced_deployment, OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE)
    where = f"deployment/{OPERATOR_DEPLOYMENT} in {OPERATOR_NAMESPACE}"
    if dep is None:
        return Finding(
            "operator",
            FAIL,
            f"no {where}: TrainingJobs will stay Pending",
            "kubectl apply --server-side -k manifests/base",
        )
    containers = dep["spec"]["template"]["spec"]["containers"]
    image = containers[0].get("image", "") if containers else ""
    available = int((dep.get("status") or {}).get("availableReplicas") or 0)
    if available < 1:
        return Finding(
            "operator",
            FAIL,
            f"{where} has no available replica (image {image})",
            f"kubectl -n {OPERATOR_NAMESPACE} describe deployment {OPERATOR_DEPLOYMENT}; kubectl "
            f"-n {OPERATOR_NAMESPACE} logs deployment/{OPERATOR_DEPLOYMENT}",
        )
    version = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "untagged"
    return Finding("operator", OK, f"{where} available ({available}), version {version}")


def _names(nodes: Iterable[Mapping[str, Any]], limit: int = 4) -> str:
    names = sorted(n["metadata"]["name"] for n in nodes)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _allocatable(node: Mapping[str, Any], resource: str) -> int:
    value = str(((node.get("status") or {}).get("allocatable") or {}).get(resource) or "0")
    return int(value) if value.isdigit() else 0


def check_nodes(
    nodes: Sequence[Mapping[str, Any]], instance_types: Sequence[str] = ()
) -> list[Finding]:
    """Device plugins, EFA and placement labels on the nodes jobs would target."""
    groups: dict[str, tuple[InstanceProfile, list[Mapping[str, Any]]]] = {}
    for node in nodes:
        itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE, "")
        profile = lookup(itype) if itype else None
        if profile is None or (instance_types and itype not in instance_types):
            continue
        if profile.accelerator_kind == "none" and not instance_types:
            continue
        groups.setdefault(itype, (profile, []))[1].append(node)
    missing = [t for t in instance_types if t not in groups]
    out: list[Finding] = []
    for itype in missing:
        out.append(
            Finding(
                f"nodes/{itype}",
                WARN,
                f"no {itype} node now (fine with Karpenter, which launches them on demand; "
                "the checks below run on nodes that exist)",
                f"check the NodePool/node group allows {itype}",
            )
        )
    if not groups and not instance_types:
        out.append(
            Finding(
                "nodes",
                WARN,
                "no GPU or Trainium node in the cluster now",
                "create a node group or Karpenter NodePool for the instance types jobs use",
            )
        )
    for itype, (profile, members) in sorted(groups.items()):
        check = f"nodes/{itype}"
        resource = RESOURCE.get(profile.accelerator_kind)
        if resource:
            bad = [n for n in members if _allocatable(n, resource) < 1]
            if bad:
                out.append(
                    Finding(
                        check,
                        FAIL,
                        f"{resource} not allocatable on {_names(bad)}",
                        PLUGIN_FIX[profile.accelerator_kind],
                    )
                )
        if profile.efa_interfaces:
            bad = [n for n in members if _allocatable(n, EFA) < 1]
            if bad:
                # Where EFA is what the instance is for (RDMA: p4d, p5, trn) its absence is a
                # failure; elsewhere jobs can run with spec.efa.interfaces: 0.
                out.append(
                    Finding(
                        check,
                        FAIL if profile.efa_rdma else WARN,
                        f"{EFA} not allocatable on {_names(bad)}"
                        + ("" if profile.efa_rdma else ": jobs there need spec.efa.interfaces: 0"),
                        EFA_FIX,
                    )
                )
        for label, fix in (
            (
                ZONE,
                "nodes without a zone label cannot be kept in one zone per attempt; EKS and "
                "Karpenter set it: check the node's registration",
            ),
            (INSTANCE_TYPE, "set node.kubernetes.io/instance-type (EKS sets it)"),
        ):
            bad = [n for n in members if label not in (n["metadata"].get("labels") or {})]
            if bad:
                out.append(Finding(check, FAIL, f"label {label} missing on {_names(bad)}", fix))
        bad = [
            n
            for n in members
            if not {KARPENTER_CAPACITY, EKS_CAPACITY} & set(n["metadata"].get("labels") or {})
        ]
        if bad:
            out.append(
                Finding(
                    check,
                    FAIL,
                    f"no capacity-type label ({KARPENTER_CAPACITY} or {EKS_CAPACITY}) on "
                    f"{_names(bad)}: spec.capacity cannot select them",
                    "use Karpenter or EKS managed node groups, or label self-managed nodes "
                    f"{EKS_CAPACITY}=ON_DEMAND|SPOT",
                )
            )
        if not any(f.check == check and f.status == FAIL for f in out):
            out.append(
                Finding(
                    check, OK, f"{len(members)} node(s): device plugin, EFA and labels in place"
                )
            )
    return out


def _spot(node: Mapping[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    return labels.get(KARPENTER_CAPACITY) == "spot" or labels.get(EKS_CAPACITY) == "SPOT"


def _env(workload: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in workload["spec"]["template"]["spec"].get("containers") or []:
        env |= {e["name"]: str(e.get("value", "")) for e in c.get("env") or [] if "name" in e}
    return env


def check_spot_notices(
    nodes: Sequence[Mapping[str, Any]],
    daemonsets: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
) -> Finding:
    spot = [n for n in nodes if _spot(n)]
    if not spot:
        return Finding("spot-notices", OK, "no spot nodes now (nothing to be warned about)")
    sources: list[str] = []
    problems: list[str] = []
    for w in [*daemonsets, *deployments]:
        name = w["metadata"]["name"]
        if "aws-node-termination-handler" in name:
            if _env(w).get("TAINT_NODE", "").lower() == "true":
                sources.append(f"NTH ({w['metadata']['namespace']}/{name}, taintNode=true)")
            else:
                problems.append(f"NTH {name} runs without taintNode=true")
        elif name == "karpenter" and w["kind"] == "Deployment":
            queue = _env(w).get("INTERRUPTION_QUEUE") or _env(w).get("AWS_INTERRUPTION_QUEUE_NAME")
            if queue:
                sources.append(f"Karpenter interruption handling (queue {queue})")
            else:
                problems.append("Karpenter runs without an interruption queue")
        elif name == NODE_AGENT_DAEMONSET:
            sources.append(f"kubetrain node agent ({w['metadata']['namespace']}/{name})")
    if sources:
        return Finding(
            "spot-notices", OK, f"{len(spot)} spot node(s); notices from: " + "; ".join(sources)
        )
    found = f" ({'; '.join(problems)})" if problems else ""
    return Finding(
        "spot-notices",
        FAIL,
        f"{len(spot)} spot node(s) but no spot notice reaches the operator{found}: an "
        "interruption is seen only when the node is gone, and the work since the last "
        "checkpoint is lost",
        "one of: AWS Node Termination Handler with taintNode=true; Karpenter with "
        "settings.interruptionQueue; or kubectl apply -k manifests/node-agent",
    )


def run(api_client: Any, instance_types: Sequence[str] = ()) -> list[Finding]:
    import json

    from kubernetes import client

    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ext = client.ApiextensionsV1Api(api_client)

    def items(call: Any, *args: Any) -> list[dict[str, Any]]:
        data = json.loads(call(*args, _preload_content=False).data)
        kind = str(data.get("kind", "")).removesuffix("List")
        return [{**i, "kind": kind} for i in data.get("items") or []]

    nodes = items(core.list_node)
    findings = [check_crd(ext), check_operator(apps)]
    findings += check_nodes(nodes, instance_types)
    findings.append(
        check_spot_notices(
            nodes,
            items(apps.list_daemon_set_for_all_namespaces),
            items(apps.list_deployment_for_all_namespaces),
        )
    )
    return findings
