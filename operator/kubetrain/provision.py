"""Before a job's first pass: provision what it asked for outside the gang (a new FSx volume).

Kept out of the reconcile pass: it reads the admin's StorageClass (I/O the pure builders cannot
do) and happens once per job, not per attempt. Idempotent (deterministic names, 409 = done), so a
restarted operator simply runs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kubetrain.api.models import TrainingJobSpec
from kubetrain.build.fsx import FsxBaseError, build_fsx_provisioned
from kubetrain.build.names import JobRef
from kubetrain.k8s import Kube

REASON_FSX_PROVISIONING = "FsxProvisioning"
REASON_FSX_FAILED = "FsxProvisioningFailed"


def wants_fsx(body: Mapping[str, Any]) -> bool:
    spec = body.get("spec") or {}
    return bool(((spec.get("storage") or {}).get("fsx") or {}).get("provision"))


async def ensure_fsx(
    kube: Kube, body: Mapping[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]
) -> str | None:
    """Create the job's FSx StorageClass and claim; None when done, else what is wrong."""
    try:
        spec = TrainingJobSpec.parse(body.get("spec") or {})
    except (ValidationError, ValueError):
        return None  # the reconcile pass reports InvalidSpec; nothing to provision
    fsx = spec.storage.fsx
    if fsx is None or fsx.provision is None:
        return None
    meta = body.get("metadata") or {}
    job = JobRef(name=str(meta["name"]), namespace=str(meta["namespace"]), uid=str(meta["uid"]))
    base_name = fsx.provision.storage_class_name
    base = await kube.get_storage_class(base_name)
    problem: str | None = None
    if base is None:
        problem = (
            f"spec.storage.fsx.provision.storageClassName: no StorageClass {base_name!r}: "
            "create an FSx CSI StorageClass with subnetId and securityGroupIds, or name one"
        )
    else:
        try:
            objects = build_fsx_provisioned(job, fsx.provision, base)
        except FsxBaseError as exc:
            problem = str(exc)
    if problem is not None:
        await kube.post_event(body, reason=REASON_FSX_FAILED, message=problem, warning=True)
        return problem
    created = [obj for obj in objects if await kube.create(obj)]
    if created:
        message = (
            f"FSx for Lustre {fsx.provision.deployment_type} {fsx.provision.size} requested "
            f"through StorageClass {objects[0]['metadata']['name']} (from {base_name}); "
            f"claim {objects[1]['metadata']['name']}"
        )
        logger.info("%s", message)
        await kube.post_event(body, reason=REASON_FSX_PROVISIONING, message=message)
    return None
