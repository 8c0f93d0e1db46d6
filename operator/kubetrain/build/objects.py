"""Manifests for one attempt: RBAC, FSx PV/PVC, the headless Service and the worker pods."""

from __future__ import annotations

from typing import Any

from kubetrain.api.constants import (
    ANNOTATION_SPEC_HASH,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_JOB_NAMESPACE,
    LABEL_RANK,
    LABEL_ROLE,
    GangScheduling,
)
from kubetrain.build.env import MASTER_PORT, container_env
from kubetrain.build.launcher import worker_command
from kubetrain.build.merge import merge_pod_template
from kubetrain.build.names import (
    JobRef,
    fsx_claim_name,
    fsx_volume_name,
    metadata,
    pod_name,
    service_name,
    worker_role,
    worker_service_account,
)
from kubetrain.build.placement import (
    EFA_RESOURCE,
    GPU_RESOURCE,
    NEURON_RESOURCE,
    Placement,
    affinity,
    node_selector,
    tolerations,
)
from kubetrain.build.podgroup import build_podgroup, scheduling_group
from kubetrain.build.resolve import Resolved

WORKER_CONTAINER = "worker"
ROLE_WORKER = "worker"
FSX_CSI_DRIVER = "fsx.csi.aws.com"


def build_rbac(
    job: JobRef, attempt: int, nodes: int, service_account: str | None = None
) -> list[dict[str, Any]]:
    """The workers' identity: they may read, watch and annotate only this attempt's pods (the
    checkpoint protocol runs through pod annotations), nothing else.

    `service_account`: the user's existing account (spec.serviceAccountName, e.g. IRSA): the Role
    is bound to it and no account is made; else a per-job `<job>-worker` account, owned by the job.
    """
    sa = service_account or worker_service_account(job.name)
    role = worker_role(job.name, attempt)
    labels = {LABEL_ATTEMPT: str(attempt)}
    account = (
        []
        if service_account
        else [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(job, sa)}]
    )
    return [
        *account,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(job, role, labels),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "resourceNames": [pod_name(job.name, attempt, i) for i in range(nodes)],
                    "verbs": ["get", "list", "watch", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(job, role, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": job.namespace}],
        },
    ]


def build_service(job: JobRef) -> dict[str, Any]:
    """Headless, publishing not-ready pods: rank 0's name must resolve before it is Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(job, service_name(job.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: job.name, LABEL_ROLE: ROLE_WORKER},
            "ports": [
                {
                    "name": "rendezvous",
                    "port": MASTER_PORT,
                    "targetPort": MASTER_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def fsx_selector(job: JobRef) -> str:
    """Label selector for the job's cluster-scoped FSx PV, which has no owner reference: the
    operator deletes PVs matching it when the job is deleted (reclaim policy Retain, so deleting
    the PV never touches the file system)."""
    return f"{LABEL_JOB}={job.name},{LABEL_JOB_NAMESPACE}={job.namespace}"


def build_fsx_static(job: JobRef, r: Resolved) -> list[dict[str, Any]]:
    """A static PV bound to a PVC for `storage.fsx.fileSystemId`; nothing for `claimName`."""
    fsx = r.spec.storage.fsx
    if fsx is None or fsx.file_system_id is None:
        return []
    pv, pvc = fsx_volume_name(job), fsx_claim_name(job.name)
    pv_meta = metadata(job, pv, {LABEL_JOB_NAMESPACE: job.namespace}, namespaced=False)
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": pv_meta,
            "spec": {
                "capacity": {"storage": fsx.capacity},
                "volumeMode": "Filesystem",
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "mountOptions": ["flock"],
                "claimRef": {"namespace": job.namespace, "name": pvc},
                "csi": {
                    "driver": FSX_CSI_DRIVER,
                    "volumeHandle": fsx.file_system_id,
                    "volumeAttributes": {"dnsname": fsx.dns_name, "mountname": fsx.mount_name},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(job, pvc),
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": fsx.capacity}},
            },
        },
    ]


def _resources(r: Resolved) -> dict[str, Any]:
    """cpu/memory always requested (never BestEffort); memory also limited so /dev/shm and the
    process share one budget; extended resources and hugepages need limit == request."""
    extended: dict[str, str] = {}
    kind = r.spec.accelerator.kind
    if kind != "none" and r.accelerators_per_node:
        extended[GPU_RESOURCE if kind == "nvidia" else NEURON_RESOURCE] = str(
            r.accelerators_per_node
        )
    if r.efa_interfaces:
        extended[EFA_RESOURCE] = str(r.efa_interfaces)
    if r.hugepages:
        extended["hugepages-2Mi"] = r.hugepages
    return {
        "requests": {"cpu": r.cpu, "memory": r.memory, **extended},
        "limits": {"memory": r.memory, **extended},
    }


def _volumes(job: JobRef, r: Resolved) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": r.shm}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    fsx = r.spec.storage.fsx
    if fsx is not None:
        claim = fsx.claim_name or fsx_claim_name(job.name)
        volumes.append({"name": "fsx", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": "fsx", "mountPath": fsx.mount_path})
    return volumes, mounts


def build_pod(
    job: JobRef,
    r: Resolved,
    attempt: int,
    rank: int,
    *,
    resume_manifest: str | None = None,
    placement: Placement | None = None,
    gang: GangScheduling = GangScheduling.KUBETRAIN,
) -> dict[str, Any]:
    """One worker pod. `placement`: the attempt's zone (nodeSelector; no podAffinity then) and
    capacity type when the operator chose them, so a gang never lands where it has no room.
    `gang` NATIVE: the pod belongs to the attempt's PodGroup (build_podgroup)."""
    name = pod_name(job.name, attempt, rank)
    labels = {LABEL_ATTEMPT: str(attempt), LABEL_RANK: str(rank), LABEL_ROLE: ROLE_WORKER}
    zone = placement.zone if placement else None
    volumes, mounts = _volumes(job, r)
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": r.spec.image,
        "command": worker_command(job, r, attempt, rank),
    }
    if r.spec.args:
        container["args"] = list(r.spec.args)
    container |= {
        "env": container_env(job, r, attempt, rank, resume_manifest),
        "resources": _resources(r),
        "ports": [{"name": "rendezvous", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "hostname": name,
        "subdomain": service_name(job.name),
        "serviceAccountName": r.spec.service_account_name or worker_service_account(job.name),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": r.spec.termination_grace_period_seconds,
    }
    if selector := node_selector(r, zone):
        spec["nodeSelector"] = selector
    if aff := affinity(job, r, attempt, placement):
        spec["affinity"] = aff
    if tol := tolerations(r):
        spec["tolerations"] = tol
    spec |= {"containers": [container], "volumes": volumes}
    if gang is GangScheduling.NATIVE:
        spec["schedulingGroup"] = scheduling_group(job, attempt)
    meta = metadata(job, name, labels)
    meta["annotations"] = {ANNOTATION_SPEC_HASH: r.spec_hash}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    return merge_pod_template(pod, r.spec.pod_template)


def build_attempt(
    job: JobRef,
    r: Resolved,
    attempt: int,
    *,
    resume_manifest: str | None = None,
    placement: Placement | None = None,
    gang: GangScheduling = GangScheduling.KUBETRAIN,
) -> list[dict[str, Any]]:
    """Everything for one attempt, in creation order: RBAC first (pods need their account),
    storage, the Service (DNS before rendezvous), the PodGroup when the scheduler keeps the gang
    together (`gang` NATIVE; before its pods), then pods rank 0..n-1."""
    native = gang is GangScheduling.NATIVE
    return [
        *build_rbac(job, attempt, r.nodes, r.spec.service_account_name),
        *build_fsx_static(job, r),
        build_service(job),
        *([build_podgroup(job, attempt, r.nodes)] if native else []),
        *(
            build_pod(
                job,
                r,
                attempt,
                rank,
                resume_manifest=resume_manifest,
                placement=placement,
                gang=gang,
            )
            for rank in range(r.nodes)
        ),
    ]
