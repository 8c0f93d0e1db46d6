"""What enterprise accounts require of every SageMaker job: a VPC, KMS keys, network isolation;
and an escape hatch for request fields the components do not model.

Training and tuning (its TrainingJobDefinition) put these fields in one place, processing in
another: `Security` knows both. `extra_request` is merged last onto the request, after the checks
that its top-level fields exist in the API (botocore's service model) and that it does not
replace what makes reattach and cleanup work (the job's name and its run tags).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetrain_kfp import validate as v

_SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SG_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
_KMS_RE = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias/[\w/+=,.@-]+)$"
)
# Fields of the request the components own: the deterministic name (reattach on retry) and the
# run tags (the exit handler's cleanup finds jobs by them).
OWNED = frozenset({"TrainingJobName", "ProcessingJobName", "HyperParameterTuningJobName", "Tags"})


@dataclass(frozen=True)
class Security:
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    kms_key_id: str = ""  # S3 output encryption
    volume_kms_key_id: str = ""  # the instances' ML storage volumes
    network_isolation: bool = False
    inter_container_encryption: bool = False

    @classmethod
    def of(
        cls,
        *,
        subnets: Sequence[str] = (),
        security_group_ids: Sequence[str] = (),
        kms_key_id: str = "",
        volume_kms_key_id: str = "",
        network_isolation: bool = False,
        inter_container_encryption: bool = False,
    ) -> Security:
        """Validated: both subnets and security groups or neither, ids and keys well formed."""
        if bool(subnets) != bool(security_group_ids):
            raise v.InputError(
                "inputs 'subnets' and 'security_group_ids' go together: a VPC job needs both "
                "(e.g. subnets=['subnet-0abc...'], security_group_ids=['sg-0def...'])"
            )
        for subnet in subnets:
            if not _SUBNET_RE.match(subnet):
                raise v.InputError(f"input 'subnets': {subnet!r} is not a subnet id (subnet-...)")
        for group in security_group_ids:
            if not _SG_RE.match(group):
                raise v.InputError(
                    f"input 'security_group_ids': {group!r} is not a security group id (sg-...)"
                )
        for name, key in (("kms_key_id", kms_key_id), ("volume_kms_key_id", volume_kms_key_id)):
            if key and not _KMS_RE.match(key):
                raise v.InputError(
                    f"input '{name}' = {key!r} is not a KMS key: give a key id, key ARN, alias "
                    "(alias/...) or alias ARN"
                )
        return cls(
            tuple(subnets),
            tuple(security_group_ids),
            kms_key_id,
            volume_kms_key_id,
            bool(network_isolation),
            bool(inter_container_encryption),
        )

    def _vpc(self) -> dict[str, Any] | None:
        if not self.subnets:
            return None
        return {"SecurityGroupIds": list(self.security_group_ids), "Subnets": list(self.subnets)}

    def training(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """CreateTrainingJob, and a tuning job's TrainingJobDefinition."""
        out = copy.deepcopy(dict(request))
        if vpc := self._vpc():
            out["VpcConfig"] = vpc
        if self.kms_key_id:
            out.setdefault("OutputDataConfig", {})["KmsKeyId"] = self.kms_key_id
        if self.volume_kms_key_id:
            out.setdefault("ResourceConfig", {})["VolumeKmsKeyId"] = self.volume_kms_key_id
        if self.network_isolation:
            out["EnableNetworkIsolation"] = True
        if self.inter_container_encryption:
            out["EnableInterContainerTrafficEncryption"] = True
        return out

    def processing(self, request: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(request))
        network: dict[str, Any] = {}
        if vpc := self._vpc():
            network["VpcConfig"] = vpc
        if self.network_isolation:
            network["EnableNetworkIsolation"] = True
        if self.inter_container_encryption:
            network["EnableInterContainerTrafficEncryption"] = True
        if network:
            out["NetworkConfig"] = network
        if self.kms_key_id:
            out.setdefault("ProcessingOutputConfig", {})["KmsKeyId"] = self.kms_key_id
        if self.volume_kms_key_id:
            cluster = out.setdefault("ProcessingResources", {}).setdefault("ClusterConfig", {})
            cluster["VolumeKmsKeyId"] = self.volume_kms_key_id
        return out


def request_fields(operation: str) -> list[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).input_shape
    return list(shape.members) if shape is not None else []


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value)
        return out
    return copy.deepcopy(over)


def merge_extra(
    request: Mapping[str, Any], extra: Mapping[str, Any] | None, operation: str
) -> dict[str, Any]:
    """`extra` merged onto `request` (objects merge key by key, lists and values replace)."""
    if not extra:
        return dict(request)
    known = request_fields(operation)
    for key in extra:
        if key in OWNED:
            raise v.InputError(
                f"input 'extra_request' may not set {key}: the component owns it (deterministic "
                "names make retries reattach; run tags let the exit handler clean up)"
            )
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise v.InputError(
                f"input 'extra_request': {operation} has no field {key!r}{hint}; its fields are "
                f"{', '.join(sorted(known))}"
            )
    merged: dict[str, Any] = _merge(dict(request), extra)
    return merged
