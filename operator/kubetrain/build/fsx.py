"""A per-job FSx for Lustre file system, provisioned by the FSx CSI driver (`storage.fsx.provision`).

The cluster's admin keeps one FSx CSI StorageClass with the network settings (subnetId,
securityGroupIds); the job's own StorageClass copies it and sets what the job chose (deployment
type, throughput, linked S3 paths), because the driver takes those only as StorageClass
parameters. The claim is owned by the job, so deleting the job (or its TTL) deletes the claim, and
the reclaim policy Delete makes the driver delete the file system; the StorageClass is
cluster-scoped and removed by the operator's deletion handler (`fsx_selector`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetrain.api.constants import LABEL_JOB_NAMESPACE
from kubetrain.api.models import FsxProvision
from kubetrain.build.names import JobRef, fsx_claim_name, fsx_volume_name, metadata

FSX_CSI_DRIVER = "fsx.csi.aws.com"


class FsxBaseError(ValueError):
    """The StorageClass named in storage.fsx.provision cannot be the base of an FSx volume."""


def fsx_storage_class_name(job: JobRef) -> str:
    """Cluster-scoped, so namespaced by hand (same shape as the static PV's name)."""
    return fsx_volume_name(job)


def build_fsx_provisioned(
    job: JobRef, provision: FsxProvision, base: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The job's StorageClass (from `base`, the admin's) and its claim, in creation order."""
    if base.get("provisioner") != FSX_CSI_DRIVER:
        raise FsxBaseError(
            f"spec.storage.fsx.provision.storageClassName: StorageClass "
            f"{base.get('metadata', {}).get('name')!r} has provisioner "
            f"{base.get('provisioner')!r}, not {FSX_CSI_DRIVER}: name an FSx CSI StorageClass"
        )
    parameters = {str(k): str(v) for k, v in (base.get("parameters") or {}).items()}
    parameters["deploymentType"] = provision.deployment_type
    for key, value in (
        ("perUnitStorageThroughput", provision.per_unit_storage_throughput),
        ("s3ImportPath", provision.s3_import_path),
        ("s3ExportPath", provision.s3_export_path),
    ):
        if value is not None:
            parameters[key] = str(value)
    name = fsx_storage_class_name(job)
    storage_class: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": metadata(job, name, {LABEL_JOB_NAMESPACE: job.namespace}, namespaced=False),
        "provisioner": FSX_CSI_DRIVER,
        "parameters": parameters,
        "reclaimPolicy": "Delete",  # the file system goes with the job's claim
        "volumeBindingMode": base.get("volumeBindingMode") or "Immediate",
        "mountOptions": list(base.get("mountOptions") or ["flock"]),
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(job, fsx_claim_name(job.name)),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": name,
            "resources": {"requests": {"storage": provision.size}},
        },
    }
    return [storage_class, claim]
