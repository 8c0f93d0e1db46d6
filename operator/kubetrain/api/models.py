"""The TrainingJob API (kubetrain.dev/v1alpha1): the single source of the CRD schema.

Validation happens twice with the same messages: CEL rules in the CRD reject bad objects at
`kubectl apply` (`_cel` entries below, copied into `crds/trainingjob.yaml` by `api/crd.py`), and
the pydantic validators here re-check them when the operator parses a spec (objects created before
a CRD upgrade, or through paths that skip the CRD). Checks that need instance facts (EFA on an
instance without EFA, ...) live in `kubetrain.build.resolve`, because the CRD cannot know them.

Every message names the full field path and the fix; the table in
`tests/unit/golden/invalid_specs.yaml` holds both layers to that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kubetrain.api import rules
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.podtemplate import (
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
    check_pod_template,
    worker_mount_paths,
)
from kubetrain.api.podtemplate import schema as pod_template_schema
from kubetrain.api.quantity import is_quantity, parse_quantity

__all__ = [
    "Accelerator",
    "Capacity",
    "Checkpoint",
    "CheckpointStatus",
    "Condition",
    "Efa",
    "EnvVar",
    "FailurePolicy",
    "Fsx",
    "Interruption",
    "InvalidSpec",
    "NodeCounts",
    "Resources",
    "RestartCounts",
    "Storage",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "printer_fields",
    "validate_job_name",
]

# --- limits that keep generated names inside Kubernetes' 63-character labels --------------------
# Pod names are "<job>-<attempt>-<rank>" and double as DNS hostnames, so they must be DNS labels:
# a 52-character job name leaves room for "-<attempt up to 99999>-<rank up to 4095>".
MAX_JOB_NAME = 52
MAX_NODES = 4096
MAX_ACCELERATORS_PER_NODE = 64
MAX_EFA_INTERFACES = 32
MAX_RESTARTS = 10000
MAX_STRING = 4096  # bounds CEL cost estimation on free-form strings
MAX_ENV = 256
MAX_ARGS = 1024
JOB_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Env names the operator owns (RESERVED_ENV, RESERVED_ENV_PREFIXES) live in api/podtemplate.py,
# which refuses them in podTemplate containers too.
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
S3_URI_PATTERN = rules.S3_URI_PATTERN
FSX_ID_PATTERN = r"^fs-[0-9a-f]{8,17}$"
ZONE_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$"
AWS_OFI_NCCL_VERSION_PATTERN = r"^[0-9]+[.][0-9]+([.][0-9]+)?$"
SERVICE_ACCOUNT_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
MSG_SERVICE_ACCOUNT = (
    "spec.serviceAccountName must name a ServiceAccount in the job's namespace "
    "(lowercase letters, digits, '-' and '.', e.g. train-s3)"
)


def _rule(rule: str, message: str, **extra: str) -> dict[str, str]:
    return {"rule": rule, "message": message, **extra}


def _cel(*rules: dict[str, str]) -> dict[str, Any]:
    """JSON-schema extra that carries CEL rules into the generated CRD."""
    return {"x-kubernetes-validations": list(rules)}


def _fail(field: str, message: str) -> NoReturn:
    """Raise from inside a validator with the exact field path (pydantic only knows the model's)."""
    raise PydanticCustomError(
        "kubetrain_invalid", "{message}", {"field": field, "message": message}
    )


class _Model(BaseModel):
    """Frozen, camelCase on the wire, snake_case in Python; unknown spec fields are errors."""

    model_config = ConfigDict(
        frozen=True,
        populate_by_name=True,
        alias_generator=to_camel,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


# Quantities accept `8` as well as "8" (as Kubernetes' own resource fields do) and normalise to str.
# The CRD generator turns the str|int union into `x-kubernetes-int-or-string`; the length bound
# keeps CEL's quantity() within its cost budget.
MAX_QUANTITY_LENGTH = 64
Quantity = Annotated[
    str | int,
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": MAX_QUANTITY_LENGTH}]}
    ),
]


def _quantity(
    field: str, value: str | int | None, fix: str, message: str, maximum: str | None = None
) -> str | None:
    """A quantity the API server accepts, above zero and at most `maximum` (CEL: rules.quantity)."""
    if value is None:
        return None
    text = str(value)
    if (
        isinstance(value, bool)
        or len(text) > MAX_QUANTITY_LENGTH
        or not is_quantity(text)
        or parse_quantity(text) <= 0
    ):
        _fail(field, f"{message}; got {text!r}")
    if maximum is not None and parse_quantity(text) > parse_quantity(maximum):
        _fail(field, f"{message}; got {text!r}, more than {maximum}")
    return text


# --- spec ----------------------------------------------------------------------------------------
MSG_KIND_NONE_PER_NODE = (
    "spec.accelerator.perNode must be 0 or unset when spec.accelerator.kind is none: "
    "set kind to nvidia or neuron, or remove perNode"
)
MSG_PER_NODE_ZERO = (
    "spec.accelerator.perNode must be at least 1 for kind nvidia or neuron: "
    "set perNode, or set kind to none for a CPU-only job"
)
MSG_PER_NODE_RANGE = f"spec.accelerator.perNode must be between 0 and {MAX_ACCELERATORS_PER_NODE}: set it to the accelerators each pod uses"
MSG_INSTANCE_TYPE = "spec.accelerator.instanceType must be an EC2 instance type such as p5.48xlarge (lowercase, no spaces)"


class Accelerator(_Model):
    """What each pod runs on. `instanceType` drives every default through the instance profiles."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule(
                "self.kind != 'none' || !has(self.perNode) || self.perNode == 0",
                MSG_KIND_NONE_PER_NODE,
            ),
            _rule(
                "self.kind == 'none' || !has(self.perNode) || self.perNode >= 1",
                MSG_PER_NODE_ZERO,
            ),
        )
    )

    kind: Literal["nvidia", "neuron", "none"] = Field(
        description="Accelerator family: nvidia (nvidia.com/gpu), neuron (aws.amazon.com/neuron, Trainium) or none."
    )
    instance_type: str | None = Field(
        default=None,
        max_length=64,
        description="EC2 instance type the pods run on (node.kubernetes.io/instance-type). Known types "
        "default perNode, EFA, cpu, memory and /dev/shm; other types need those set explicitly.",
        json_schema_extra=_cel(
            _rule("self.matches('^(ml[.])?[a-z0-9-]+[.][a-z0-9-]+$')", MSG_INSTANCE_TYPE)
        ),
    )
    per_node: int | None = Field(
        default=None,
        description="Accelerator devices per pod (GPUs, or Trainium devices). Default: all of the instance's.",
        json_schema_extra=_cel(
            _rule(f"self >= 0 && self <= {MAX_ACCELERATORS_PER_NODE}", MSG_PER_NODE_RANGE)
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Accelerator:
        if self.instance_type is not None and not re.match(
            r"^(ml[.])?[a-z0-9-]+[.][a-z0-9-]+$", self.instance_type
        ):
            _fail("spec.accelerator.instanceType", MSG_INSTANCE_TYPE)
        if self.per_node is not None:
            if not 0 <= self.per_node <= MAX_ACCELERATORS_PER_NODE:
                _fail("spec.accelerator.perNode", MSG_PER_NODE_RANGE)
            if self.kind == "none" and self.per_node > 0:
                _fail("spec.accelerator.perNode", MSG_KIND_NONE_PER_NODE)
            if self.kind != "none" and self.per_node == 0:
                _fail("spec.accelerator.perNode", MSG_PER_NODE_ZERO)
        return self


MSG_EFA = (
    f'spec.efa.interfaces must be "auto" or a number from 0 to {MAX_EFA_INTERFACES}: '
    "use auto for the instance's EFA count, or 0 to turn EFA off"
)
MSG_OFI_VERSION = "spec.efa.awsOfiNcclVersion must look like 1.7.3: set the aws-ofi-nccl version in your image, or remove it"


class Efa(_Model):
    """Elastic Fabric Adapter devices per pod, and the network-stack version the env is tuned for."""

    interfaces: Literal["auto"] | int = Field(
        default="auto",
        description='"auto": the instance\'s EFA count when the job spans nodes, 0 for one node; 0: off; N: exactly N.',
        json_schema_extra=_cel(
            _rule(
                f"type(self) == string ? self == 'auto' : (self >= 0 && self <= {MAX_EFA_INTERFACES})",
                MSG_EFA,
            )
        ),
    )
    aws_ofi_nccl_version: str | None = Field(
        default=None,
        max_length=32,
        description="aws-ofi-nccl version in the image, when older than 1.7: adds the legacy FI_*/NCCL_* "
        "settings it needs (FI_EFA_USE_DEVICE_RDMA, FI_PROVIDER, NCCL_PROTO). Unset: a current stack.",
        json_schema_extra=_cel(
            _rule(f"self.matches('{AWS_OFI_NCCL_VERSION_PATTERN}')", MSG_OFI_VERSION)
        ),
    )

    @field_validator("interfaces", mode="before")
    @classmethod
    def _interfaces(cls, value: object) -> object:
        if value == "auto":
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= MAX_EFA_INTERFACES
        ):
            _fail("spec.efa.interfaces", MSG_EFA + f"; got {value!r}")
        return value

    @field_validator("aws_ofi_nccl_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not re.match(AWS_OFI_NCCL_VERSION_PATTERN, value):
            _fail("spec.efa.awsOfiNcclVersion", MSG_OFI_VERSION)
        return value


MAX_CPU = "4096"
MAX_MEMORY = "64Ti"
MSG_CPU = f"spec.resources.cpu must be a Kubernetes quantity above 0 and at most {MAX_CPU}, such as 8 or 7500m: set the CPU request per pod"
MSG_MEMORY = f"spec.resources.memory must be a Kubernetes quantity above 0 and at most {MAX_MEMORY}, such as 64Gi: set the memory request per pod"


class Resources(_Model):
    """CPU and memory requested per pod; defaults leave room for the node's daemons."""

    cpu: Quantity | None = Field(
        default=None,
        description="CPU request per pod. Default: the instance's vCPUs minus ~6% for system daemons.",
        json_schema_extra=_cel(_rule(rules.quantity(MAX_CPU), MSG_CPU)),
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory request and limit per pod (includes /dev/shm). Default: ~90% of the instance's.",
        json_schema_extra=_cel(_rule(rules.quantity(MAX_MEMORY), MSG_MEMORY)),
    )

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | int | None) -> str | None:
        return _quantity("spec.resources.cpu", value, "8 or 7500m", MSG_CPU, MAX_CPU)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int | None) -> str | None:
        return _quantity("spec.resources.memory", value, "64Gi", MSG_MEMORY, MAX_MEMORY)


MSG_FSX_ONE_OF = (
    "spec.storage.fsx needs exactly one of claimName (an existing PVC), fileSystemId "
    "(with dnsName and mountName) or provision (a new file system): set one, remove the others"
)
MSG_FSX_S3_PATH = (
    "spec.storage.fsx.provision.s3ImportPath/s3ExportPath must look like s3://bucket/prefix"
)
MSG_FSX_EXPORT = (
    "spec.storage.fsx.provision.s3ExportPath needs s3ImportPath: FSx exports to the linked "
    "bucket, set both"
)


MSG_FSX_STATIC = (
    "spec.storage.fsx.fileSystemId needs dnsName and mountName (from `aws fsx describe-file-systems`): "
    "set spec.storage.fsx.dnsName and spec.storage.fsx.mountName"
)
MSG_FSX_ID = "spec.storage.fsx.fileSystemId must look like fs-0123456789abcdef0: copy it from the FSx console"
MSG_MOUNT_PATH = (
    "spec.storage.fsx.mountPath must be an absolute path such as /fsx, not /, a system directory "
    "(/bin, /dev, /etc, /lib, /proc, /sys, /usr, /var/run) or a path with '..' or '//'"
)
MSG_FSX_CLAIM = "spec.storage.fsx.claimName must name a PersistentVolumeClaim (a DNS subdomain such as fsx-pvc): set it, or use fileSystemId"
MSG_FSX_NAMES = "spec.storage.fsx.dnsName and spec.storage.fsx.mountName must not be empty: copy them from `aws fsx describe-file-systems`"
MSG_FSX_CAPACITY = "spec.storage.fsx.capacity must be a Kubernetes quantity such as 1200Gi"


class FsxProvision(_Model):
    """A new FSx for Lustre file system for this job, made by the FSx CSI driver and deleted with
    the job: the operator copies `storageClassName` (an FSx CSI StorageClass holding the network
    settings: subnetId, securityGroupIds) into a per-job StorageClass with these parameters."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule("!has(self.s3ExportPath) || has(self.s3ImportPath)", MSG_FSX_EXPORT)
        )
    )

    storage_class_name: str = Field(
        max_length=253,
        description="The FSx CSI StorageClass to start from (subnetId, securityGroupIds, ...).",
    )
    size: str = Field(
        default="1200Gi",
        max_length=32,
        description="Storage capacity: 1200Gi, or a multiple of 2400Gi.",
        json_schema_extra=_cel(_rule("isQuantity(self)", MSG_FSX_CAPACITY)),
    )
    deployment_type: Literal["SCRATCH_1", "SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2"] = Field(
        default="SCRATCH_2", description="FSx for Lustre deployment type."
    )
    per_unit_storage_throughput: int | None = Field(
        default=None, description="MB/s/TiB for PERSISTENT types (e.g. 125, 250, 500, 1000)."
    )
    s3_import_path: str | None = Field(
        default=None,
        max_length=1024,
        description="Linked S3 data: files appear at once and load lazily on first read.",
        json_schema_extra=_cel(_rule(f"self.matches('{S3_URI_PATTERN}')", MSG_FSX_S3_PATH)),
    )
    s3_export_path: str | None = Field(
        default=None,
        max_length=1024,
        description="Where data repository exports write (in the import path's bucket).",
        json_schema_extra=_cel(_rule(f"self.matches('{S3_URI_PATTERN}')", MSG_FSX_S3_PATH)),
    )

    @model_validator(mode="after")
    def _check(self) -> FsxProvision:
        if not is_quantity(self.size):
            _fail("spec.storage.fsx.provision.size", MSG_FSX_CAPACITY)
        for name, path in (
            ("s3ImportPath", self.s3_import_path),
            ("s3ExportPath", self.s3_export_path),
        ):
            if path is not None and not re.match(S3_URI_PATTERN, path):
                _fail(f"spec.storage.fsx.provision.{name}", MSG_FSX_S3_PATH)
        if self.s3_export_path and not self.s3_import_path:
            _fail("spec.storage.fsx.provision.s3ExportPath", MSG_FSX_EXPORT)
        return self


class Fsx(_Model):
    """An FSx for Lustre file system: an existing claim, or a static PV/PVC from the file system's ids."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule(
                "(has(self.claimName) ? 1 : 0) + (has(self.fileSystemId) ? 1 : 0)"
                " + (has(self.provision) ? 1 : 0) == 1",
                MSG_FSX_ONE_OF,
            ),
            _rule(
                "!has(self.fileSystemId) || (has(self.dnsName) && has(self.mountName))",
                MSG_FSX_STATIC,
            ),
        )
    )

    claim_name: str | None = Field(
        default=None,
        max_length=253,
        description="An existing ReadWriteMany PVC in the job's namespace.",
        json_schema_extra=_cel(_rule(f"self.matches('{rules.DNS_SUBDOMAIN}')", MSG_FSX_CLAIM)),
    )
    file_system_id: str | None = Field(
        default=None,
        max_length=32,
        description="FSx for Lustre file system id; the operator creates a static PV and PVC for it.",
        json_schema_extra=_cel(_rule(f"self.matches('{FSX_ID_PATTERN}')", MSG_FSX_ID)),
    )
    provision: FsxProvision | None = Field(
        default=None, description="A new file system for this job, deleted with it."
    )
    dns_name: str | None = Field(
        default=None,
        max_length=253,
        description="The file system's DNS name.",
        json_schema_extra=_cel(_rule("size(self) > 0", MSG_FSX_NAMES)),
    )
    mount_name: str | None = Field(
        default=None,
        max_length=64,
        description="The file system's mount name.",
        json_schema_extra=_cel(_rule("size(self) > 0", MSG_FSX_NAMES)),
    )
    capacity: str = Field(
        default="1200Gi",
        max_length=32,
        description="Capacity written on the static PV (informational for Lustre).",
        json_schema_extra=_cel(_rule("isQuantity(self)", MSG_FSX_CAPACITY)),
    )
    mount_path: str = Field(
        default="/fsx",
        max_length=MAX_STRING,
        description="Where the file system is mounted in every pod.",
        json_schema_extra=_cel(_rule(rules.MOUNT_PATH_RULE, MSG_MOUNT_PATH)),
    )

    @model_validator(mode="after")
    def _check(self) -> Fsx:
        if self.claim_name is not None and not re.match(rules.DNS_SUBDOMAIN, self.claim_name):
            _fail("spec.storage.fsx.claimName", MSG_FSX_CLAIM + f"; got {self.claim_name!r}")
        if self.dns_name == "" or self.mount_name == "":
            _fail("spec.storage.fsx.dnsName", MSG_FSX_NAMES)
        modes = (self.claim_name, self.file_system_id, self.provision)
        if sum(m is not None for m in modes) != 1:
            _fail("spec.storage.fsx", MSG_FSX_ONE_OF)
        if self.file_system_id is not None:
            if not re.match(FSX_ID_PATTERN, self.file_system_id):
                _fail("spec.storage.fsx.fileSystemId", MSG_FSX_ID)
            if self.dns_name is None or self.mount_name is None:
                _fail("spec.storage.fsx.fileSystemId", MSG_FSX_STATIC)
        if not rules.mount_path_ok(self.mount_path):
            _fail("spec.storage.fsx.mountPath", MSG_MOUNT_PATH + f"; got {self.mount_path!r}")
        if not is_quantity(self.capacity):
            _fail("spec.storage.fsx.capacity", MSG_FSX_CAPACITY)
        return self


MSG_SHM = f"spec.storage.sharedMemory must be a Kubernetes quantity above 0 and at most {MAX_MEMORY}, such as 64Gi: set the /dev/shm size"


class Storage(_Model):
    fsx: Fsx | None = Field(default=None, description="FSx for Lustre, shared by every pod.")
    shared_memory: Quantity | None = Field(
        default=None,
        description="Size of /dev/shm (a memory emptyDir, counted in the pod's memory). "
        "Default: 1/8 of the memory request, at most 64Gi.",
        json_schema_extra=_cel(_rule(rules.quantity(MAX_MEMORY), MSG_SHM)),
    )

    @field_validator("shared_memory")
    @classmethod
    def _shm(cls, value: str | int | None) -> str | None:
        return _quantity("spec.storage.sharedMemory", value, "64Gi", MSG_SHM, MAX_MEMORY)


MSG_CKPT_DIR = "spec.checkpoint.dir must be an absolute path such as /fsx/checkpoints/my-job, without '..' or '//'"
MSG_CKPT_DIR_MOUNTED = (
    "spec.checkpoint.dir must be inside a mounted volume (spec.storage.fsx.mountPath, or a "
    "volumeMount of the worker container in spec.podTemplate): elsewhere checkpoints go to the "
    "container's own filesystem and vanish at the next restart; put it under /fsx (or your mount)"
)
MSG_S3_URI = (
    "spec.checkpoint.s3Uri must look like s3://bucket/prefix with a valid bucket name (3-63 "
    "lowercase letters, digits, '.' and '-'; no '..', '.-' or '-.'; not an IP address; no xn-- "
    "prefix, -s3alias or --ol-s3 suffix): fix the bucket name or remove s3Uri"
)
MSG_KEEP = "spec.checkpoint.keep must be at least 1: keep 1 or more committed checkpoints"
MSG_PERIODIC = "spec.checkpoint.periodicSteps must be at least 1: set how many steps apart periodic checkpoints are, or remove it"


class Checkpoint(_Model):
    """Where checkpoints go; the runtime library reads these through the KUBETRAIN_* env."""

    dir: str | None = Field(
        default=None,
        max_length=MAX_STRING,
        description="POSIX checkpoint directory (FSx or local NVMe). Default with FSx: <mountPath>/checkpoints/<job>.",
        json_schema_extra=_cel(_rule(rules.ABSOLUTE_PATH_RULE, MSG_CKPT_DIR)),
    )
    s3_uri: str | None = Field(
        default=None,
        max_length=1024,
        description="Optional S3 mirror and backstop (s3://bucket/prefix).",
        json_schema_extra=_cel(_rule(rules.S3_URI_RULE, MSG_S3_URI)),
    )
    keep: int = Field(
        default=3,
        description="Committed checkpoints kept per tier.",
        json_schema_extra=_cel(_rule("self >= 1", MSG_KEEP)),
    )
    periodic_steps: int | None = Field(
        default=None,
        description="Steps between periodic checkpoints; unset: the training code decides.",
        json_schema_extra=_cel(_rule("self >= 1", MSG_PERIODIC)),
    )

    @model_validator(mode="after")
    def _check(self) -> Checkpoint:
        if self.dir is not None and not rules.absolute_path_ok(self.dir):
            _fail("spec.checkpoint.dir", MSG_CKPT_DIR + f"; got {self.dir!r}")
        if self.s3_uri is not None and not rules.s3_uri_ok(self.s3_uri):
            _fail("spec.checkpoint.s3Uri", MSG_S3_URI + f"; got {self.s3_uri!r}")
        if self.keep < 1:
            _fail("spec.checkpoint.keep", MSG_KEEP)
        if self.periodic_steps is not None and self.periodic_steps < 1:
            _fail("spec.checkpoint.periodicSteps", MSG_PERIODIC)
        return self


MSG_ZONE = "spec.capacity.zone must be an availability zone name such as us-west-2b (not a zone id like usw2-az2)"


class Capacity(_Model):
    type: Literal["any", "spot", "on-demand", "spot-then-on-demand"] = Field(
        default="any",
        description="Purchase option: spot, on-demand (includes reserved capacity), spot-then-on-demand "
        "(prefer spot, accept on-demand) or any (no constraint). Matches both the Karpenter and the "
        "EKS managed node group labels.",
    )
    zone: str | None = Field(
        default=None,
        max_length=64,
        description="Availability zone for every pod (e.g. the FSx file system's). Unset: each attempt "
        "picks one zone for all of its pods.",
        json_schema_extra=_cel(_rule(f"self.matches('{ZONE_PATTERN}')", MSG_ZONE)),
    )

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not re.match(ZONE_PATTERN, value):
            _fail("spec.capacity.zone", MSG_ZONE)
        return value


def _msg_non_negative(field: str, what: str) -> str:
    return f"spec.failurePolicy.{field} must be between 0 and {MAX_RESTARTS}: set how many {what} the job may use"


MSG_MAX_RESTARTS = _msg_non_negative("maxRestarts", "gang restarts after a training failure")
MSG_MAX_INTERRUPTIONS = _msg_non_negative(
    "maxInterruptions", "resumes after spot or node interruptions"
)
MSG_BACKOFF = "spec.failurePolicy.backoffSeconds must be between 0 and 86400: set the wait before a new attempt"


MSG_PROGRESS_TIMEOUT = (
    "spec.failurePolicy.progressTimeoutSeconds must be between 60 and 86400: set how long a gang "
    "may go without a new training step before it counts as hung, or remove it"
)
MSG_FIRST_PROGRESS = (
    "spec.failurePolicy.firstProgressTimeoutSeconds must be between 60 and 86400: set how long a "
    "resumed attempt may take to its first step"
)


class FailurePolicy(_Model):
    """Separate budgets: a buggy script should not burn spot resumes, and spot should not fail a job."""

    max_restarts: int = Field(
        default=3,
        description="Gang restarts after user failures (a rank exiting non-zero).",
        json_schema_extra=_cel(_rule(f"self >= 0 && self <= {MAX_RESTARTS}", MSG_MAX_RESTARTS)),
    )
    max_interruptions: int = Field(
        default=20,
        description="Resumes after infrastructure events (spot reclaim, node loss), counted separately.",
        json_schema_extra=_cel(
            _rule(f"self >= 0 && self <= {MAX_RESTARTS}", MSG_MAX_INTERRUPTIONS)
        ),
    )
    backoff_seconds: int = Field(
        default=30,
        description="Wait before the next attempt after a failure.",
        json_schema_extra=_cel(_rule("self >= 0 && self <= 86400", MSG_BACKOFF)),
    )
    progress_timeout_seconds: int | None = Field(
        default=None,
        description="Hang detection: a running gang whose rank 0 reported progress (the runtime "
        "does, every 30 s at most) and then reports no new step for this long is restarted from "
        "its newest checkpoint with reason Hang, counted against maxRestarts. Unset: off. A job "
        "that never reports progress is never judged hung.",
        json_schema_extra=_cel(_rule("self >= 60 && self <= 86400", MSG_PROGRESS_TIMEOUT)),
    )
    first_progress_timeout_seconds: int = Field(
        default=1800,
        description="With progressTimeoutSeconds: how long a resumed attempt may take to its first "
        "step once every rank runs (restore, compile, warm-up).",
        json_schema_extra=_cel(_rule("self >= 60 && self <= 86400", MSG_FIRST_PROGRESS)),
    )

    @model_validator(mode="after")
    def _check(self) -> FailurePolicy:
        if self.progress_timeout_seconds is not None and not (
            60 <= self.progress_timeout_seconds <= 86400
        ):
            _fail("spec.failurePolicy.progressTimeoutSeconds", MSG_PROGRESS_TIMEOUT)
        if not 60 <= self.first_progress_timeout_seconds <= 86400:
            _fail("spec.failurePolicy.firstProgressTimeoutSeconds", MSG_FIRST_PROGRESS)
        if not 0 <= self.max_restarts <= MAX_RESTARTS:
            _fail("spec.failurePolicy.maxRestarts", MSG_MAX_RESTARTS)
        if not 0 <= self.max_interruptions <= MAX_RESTARTS:
            _fail("spec.failurePolicy.maxInterruptions", MSG_MAX_INTERRUPTIONS)
        if not 0 <= self.backoff_seconds <= 86400:
            _fail("spec.failurePolicy.backoffSeconds", MSG_BACKOFF)
        return self


MSG_ENV_NAME = (
    "spec.env[].name must be a valid environment variable name (letters, digits, '_', '-', '.')"
)
MSG_ENV_RESERVED = (
    "spec.env[].name must not be one the operator sets (KUBETRAIN_*, PET_*, MASTER_ADDR, MASTER_PORT, "
    "WORLD_SIZE, RANK, LOCAL_WORLD_SIZE, NODE_RANK, NNODES, NPROC_PER_NODE): remove it; use "
    "spec.nodes and spec.accelerator instead"
)
MSG_ENV_FORK_SAFE = (
    "spec.env[].name RDMAV_FORK_SAFE breaks EFA with PyTorch data loaders: remove it "
    "(FI_EFA_FORK_SAFE=1 is the libfabric setting, needed only on kernels older than 5.15)"
)
MSG_ENV_VALUE = "spec.env[] entries set value or valueFrom, not both: remove one"
MSG_ENV_VALUE_FROM = (
    "spec.env[].valueFrom must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef or "
    "secretKeyRef, as in a container's env: fix it or use value"
)


class _FieldRef(_Model):
    field_path: str = Field(min_length=1, max_length=256)
    api_version: str | None = Field(default=None, max_length=64)


class _ResourceFieldRef(_Model):
    resource: str = Field(min_length=1, max_length=256)
    container_name: str | None = Field(default=None, max_length=253)
    divisor: Quantity | None = None


class _KeyRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)
    optional: bool | None = None


class EnvVarSource(_Model):
    """A container env var's valueFrom: exactly one source."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule(
                "[has(self.fieldRef), has(self.resourceFieldRef), has(self.configMapKeyRef), "
                "has(self.secretKeyRef)].filter(x, x).size() == 1",
                MSG_ENV_VALUE_FROM,
            )
        )
    )
    field_ref: _FieldRef | None = None
    resource_field_ref: _ResourceFieldRef | None = None
    config_map_key_ref: _KeyRef | None = None
    secret_key_ref: _KeyRef | None = None

    @model_validator(mode="after")
    def _check(self) -> EnvVarSource:
        sources = (
            self.field_ref,
            self.resource_field_ref,
            self.config_map_key_ref,
            self.secret_key_ref,
        )
        if sum(x is not None for x in sources) != 1:
            _fail("spec.env[].valueFrom", MSG_ENV_VALUE_FROM)
        return self


_RESERVED_CEL = (
    "!(self.name in ["
    + ", ".join(f"'{n}'" for n in RESERVED_ENV)
    + "]) && "
    + " && ".join(f"!self.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES)
)


class EnvVar(_Model):
    """A container env var (value or valueFrom), added to the worker container after the operator's."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule(_RESERVED_CEL, MSG_ENV_RESERVED),
            _rule("self.name != 'RDMAV_FORK_SAFE'", MSG_ENV_FORK_SAFE),
            _rule("!(has(self.value) && has(self.valueFrom))", MSG_ENV_VALUE),
        )
    )

    name: str = Field(
        max_length=256,
        json_schema_extra=_cel(_rule(f"self.matches('{ENV_NAME_PATTERN}')", MSG_ENV_NAME)),
    )
    value: str | None = Field(default=None, max_length=32768)
    value_from: EnvVarSource | None = Field(
        default=None,
        description="As in a container's env (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
    )

    @model_validator(mode="after")
    def _check(self) -> EnvVar:
        if not re.match(ENV_NAME_PATTERN, self.name):
            _fail("spec.env[].name", MSG_ENV_NAME + f"; got {self.name!r}")
        if self.name in RESERVED_ENV or self.name.startswith(RESERVED_ENV_PREFIXES):
            _fail("spec.env[].name", MSG_ENV_RESERVED + f"; got {self.name!r}")
        if self.name == "RDMAV_FORK_SAFE":
            _fail("spec.env[].name", MSG_ENV_FORK_SAFE)
        if self.value is not None and self.value_from is not None:
            _fail("spec.env[]", MSG_ENV_VALUE)
        return self


MSG_IMAGE = "spec.image must not be empty: set the training container image, e.g. <account>.dkr.ecr.<region>.amazonaws.com/train:1.4"
MSG_IMAGE_FORMAT = (
    "spec.image must be an image reference such as <account>.dkr.ecr.<region>.amazonaws.com/train:1.4 "
    "(ASCII letters, digits and . _ - / : @ only; no spaces): fix it"
)
MSG_COMMAND = (
    "spec.command must not be empty: set the training entry point, e.g. [python, train.py]"
)
MSG_COMMAND_BLANK = "spec.command[0] must name a program, not be blank: set the entry point, e.g. [python, train.py]"
MSG_NODES = f"spec.nodes must be between 1 and {MAX_NODES}: set it to the number of worker pods (one per instance)"
MSG_MIN_NODES = (
    "spec.minNodes must be between 1 and spec.nodes: set the fewest worker pods the job may run "
    "on after an interruption, or remove it to always run on spec.nodes"
)
MSG_SHRINK_AFTER = (
    "spec.shrinkAfterSeconds must be between 0 and 86400: set how long a restart waits for room "
    "for every node before it runs on fewer (spec.minNodes)"
)
MSG_STARTUP = (
    "spec.startupTimeoutSeconds must be between 30 and 86400: set how long a gang may take to start"
)
MSG_GANG_BIND = (
    "spec.gangBindTimeoutSeconds must be between 10 and 3600: set how long a released gang may take "
    "to have every pod bound to a node"
)
MSG_TTL = (
    "spec.ttlSecondsAfterFinished must be 0 or more: set it, or remove it to keep finished jobs"
)
MSG_GRACE = "spec.terminationGracePeriodSeconds must be between 0 and 3600: set how long pods get after SIGTERM"
MSG_DEADLINE = "spec.checkpointDeadlineSeconds must be between 10 and 3600: set how long an emergency checkpoint may take"
MSG_DEADLINE_GRACE = (
    "spec.checkpointDeadlineSeconds must not exceed spec.terminationGracePeriodSeconds: pods would be "
    "killed before the checkpoint deadline; lower the deadline or raise the grace period"
)
MSG_POD_TEMPLATE_RESTART = (
    "spec.podTemplate.spec.restartPolicy must be Never (or unset): restarts belong to the operator, "
    "which restarts the whole gang; use spec.failurePolicy.maxRestarts"
)
MSG_METADATA_NAME = (
    f"metadata.name must be a DNS label of at most {MAX_JOB_NAME} characters (lowercase letters, digits "
    "and '-', starting with a letter) so pod names <name>-<attempt>-<rank> stay valid hostnames: "
    "choose a shorter name"
)


POD_TEMPLATE_DESCRIPTION = (
    "Merged onto each generated pod last ({metadata, spec}). Yours: labels, annotations (not "
    "kubetrain.dev/*), volumes and mounts, sidecars, init containers, nodeSelector, affinity, "
    "topologySpreadConstraints, tolerations (not of disruption taints), priorityClassName, "
    "schedulerName, securityContext, imagePullSecrets. Refused: env the operator sets, hostname, "
    "subdomain, serviceAccountName, automountServiceAccountToken, nodeName, "
    "terminationGracePeriodSeconds, restartPolicy other than Never, volumes named dshm/fsx; "
    "privileged, capabilities, hostNetwork/hostPID/hostIPC, hostPath and hostPort unless the "
    "cluster admin allows privileged pods in the operator's configuration."
)


class TrainingJobSpec(_Model):
    """`spec` of a TrainingJob: one all-or-nothing gang of worker pods per attempt.

    Editing a running job: failurePolicy, ttlSecondsAfterFinished, suspend, startupTimeoutSeconds,
    checkpointDeadlineSeconds, minNodes and shrinkAfterSeconds apply at once. An edit of any other field (nodes, image, env,
    resources, podTemplate, ...) asks every pod for a checkpoint, then restarts the gang with the
    new spec from that checkpoint (reason SpecChanged), counted against neither budget; during a
    backoff it applies to the next attempt.
    """

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _rule(
                "!has(self.checkpointDeadlineSeconds) || !has(self.terminationGracePeriodSeconds) "
                "|| self.checkpointDeadlineSeconds <= self.terminationGracePeriodSeconds",
                MSG_DEADLINE_GRACE,
                fieldPath=".checkpointDeadlineSeconds",
            ),
            _rule(
                rules.CHECKPOINT_DIR_MOUNTED_RULE, MSG_CKPT_DIR_MOUNTED, fieldPath=".checkpoint.dir"
            ),
            _rule(
                "!has(self.minNodes) || self.minNodes <= self.nodes",
                MSG_MIN_NODES,
                fieldPath=".minNodes",
            ),
            *rules.instance_rules(),
        )
    )
    image: str = Field(
        max_length=MAX_STRING,
        description="Training container image.",
        json_schema_extra=_cel(
            _rule("size(self) > 0", MSG_IMAGE),
            _rule(f"size(self) == 0 || self.matches('{rules.IMAGE_PATTERN}')", MSG_IMAGE_FORMAT),
        ),
    )
    command: list[Annotated[str, Field(max_length=MAX_STRING)]] = Field(
        max_length=MAX_ARGS,
        description="Entry point, e.g. [python, train.py]; the launcher wraps it (torchrun: a leading "
        "python is dropped, `-m module` kept, other executables run with --no-python).",
        json_schema_extra=_cel(
            _rule("size(self) > 0", MSG_COMMAND),
            _rule(f"size(self) == 0 || self[0].matches('{rules.NOT_BLANK}')", MSG_COMMAND_BLANK),
        ),
    )
    args: list[Annotated[str, Field(max_length=MAX_STRING)]] = Field(
        default_factory=list, max_length=MAX_ARGS, description="Arguments after the command."
    )
    launcher: Literal["torchrun", "mpirun", "none"] = Field(
        default="torchrun",
        description="torchrun: one torchrun per pod with static rendezvous on rank 0 and --max-restarts 0; "
        "mpirun: rank 0 runs mpirun over the gang (ranks > 0 run sshd; the image provides it); "
        "none: the command runs once per pod as is.",
    )
    nodes: int = Field(
        default=1,
        description="Worker pods in the gang (one per instance); all start together or none does.",
        json_schema_extra=_cel(_rule(f"self >= 1 && self <= {MAX_NODES}", MSG_NODES)),
    )
    min_nodes: int | None = Field(
        default=None,
        description="Elastic size: after an interruption, when room for every node does not "
        "return within shrinkAfterSeconds but room for at least minNodes does (in one zone), the "
        "gang resumes on fewer nodes from its checkpoint (WORLD_SIZE follows; the checkpoint must "
        "reshard, e.g. torch.distributed.checkpoint), and grows back to spec.nodes at a "
        "coordinated checkpoint when room returns. Unset: always spec.nodes.",
        json_schema_extra=_cel(_rule(f"self >= 1 && self <= {MAX_NODES}", MSG_MIN_NODES)),
    )
    shrink_after_seconds: int = Field(
        default=120,
        description="With minNodes: how long a restart waits for room for every node before it "
        "resumes on fewer.",
        json_schema_extra=_cel(_rule("self >= 0 && self <= 86400", MSG_SHRINK_AFTER)),
    )
    accelerator: Accelerator = Field(
        default_factory=lambda: Accelerator(kind="none"),
        json_schema_extra={"default": {"kind": "none"}},
    )
    efa: Efa = Field(default_factory=Efa, json_schema_extra={"default": {}})
    resources: Resources = Field(default_factory=Resources, json_schema_extra={"default": {}})
    storage: Storage = Field(default_factory=Storage, json_schema_extra={"default": {}})
    checkpoint: Checkpoint = Field(default_factory=Checkpoint, json_schema_extra={"default": {}})
    capacity: Capacity = Field(default_factory=Capacity, json_schema_extra={"default": {}})
    failure_policy: FailurePolicy = Field(
        default_factory=FailurePolicy, json_schema_extra={"default": {}}
    )
    startup_timeout_seconds: int = Field(
        default=900,
        description="A gang not fully running by then releases its capacity and retries.",
        json_schema_extra=_cel(_rule("self >= 30 && self <= 86400", MSG_STARTUP)),
    )
    gang_bind_timeout_seconds: int = Field(
        default=60,
        description="Once the operator counted room for the whole gang and lifted its scheduling "
        "gates, every pod must be bound to a node within this time; otherwise (another workload "
        "took a node first) the attempt's pods are deleted and the gang waits, gated, for room "
        "again: counted against neither budget. Only in the operator's own gang mode (kubetrain); "
        "with native PodGroups the scheduler binds the gang all or none and this is not used.",
        json_schema_extra=_cel(_rule("self >= 10 && self <= 3600", MSG_GANG_BIND)),
    )
    suspend: bool = Field(
        default=False, description="true: delete the pods (after a checkpoint) and wait."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        description="Delete the finished job this long after it succeeded or failed; unset: keep it.",
        json_schema_extra=_cel(_rule("self >= 0", MSG_TTL)),
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=MAX_ENV)
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description="An existing ServiceAccount the workers run as (e.g. annotated for IRSA or "
        "with an EKS Pod Identity association, for the S3 checkpoint mirror); the job's pod Role "
        "is bound to it. Unset: the operator makes a <job>-worker account per job.",
        json_schema_extra=_cel(
            _rule(f"self.matches('{SERVICE_ACCOUNT_PATTERN}')", MSG_SERVICE_ACCOUNT)
        ),
    )
    pod_template: Annotated[
        dict[str, Any] | None,
        WithJsonSchema(pod_template_schema(POD_TEMPLATE_DESCRIPTION)),
    ] = Field(default=None)
    termination_grace_period_seconds: int = Field(
        default=115,
        description="Pod grace period; long enough for an emergency checkpoint inside the two-minute spot notice.",
        json_schema_extra=_cel(_rule("self >= 0 && self <= 3600", MSG_GRACE)),
    )
    checkpoint_deadline_seconds: int = Field(
        default=90,
        description="How long after an interruption is detected the gang has to commit an emergency "
        "checkpoint (the deadline in the checkpoint request); at most the grace period.",
        json_schema_extra=_cel(_rule("self >= 10 && self <= 3600", MSG_DEADLINE)),
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value:
            _fail("spec.image", MSG_IMAGE)
        if not re.match(rules.IMAGE_PATTERN, value):
            _fail("spec.image", MSG_IMAGE_FORMAT + f"; got {value!r}")
        return value

    @field_validator("service_account_name")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        if value is not None and not re.match(SERVICE_ACCOUNT_PATTERN, value):
            _fail("spec.serviceAccountName", MSG_SERVICE_ACCOUNT)
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if not value:
            _fail("spec.command", MSG_COMMAND)
        if not re.search(rules.NOT_BLANK, value[0]):
            _fail("spec.command[0]", MSG_COMMAND_BLANK)
        return value

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> TrainingJobSpec:
        checks = (
            (1 <= self.nodes <= MAX_NODES, "spec.nodes", MSG_NODES),
            (
                self.min_nodes is None or 1 <= self.min_nodes <= self.nodes,
                "spec.minNodes",
                MSG_MIN_NODES,
            ),
            (
                0 <= self.shrink_after_seconds <= 86400,
                "spec.shrinkAfterSeconds",
                MSG_SHRINK_AFTER,
            ),
            (
                30 <= self.startup_timeout_seconds <= 86400,
                "spec.startupTimeoutSeconds",
                MSG_STARTUP,
            ),
            (
                10 <= self.gang_bind_timeout_seconds <= 3600,
                "spec.gangBindTimeoutSeconds",
                MSG_GANG_BIND,
            ),
            (
                self.ttl_seconds_after_finished is None or self.ttl_seconds_after_finished >= 0,
                "spec.ttlSecondsAfterFinished",
                MSG_TTL,
            ),
            (
                0 <= self.termination_grace_period_seconds <= 3600,
                "spec.terminationGracePeriodSeconds",
                MSG_GRACE,
            ),
            (
                10 <= self.checkpoint_deadline_seconds <= 3600,
                "spec.checkpointDeadlineSeconds",
                MSG_DEADLINE,
            ),
            (
                self.checkpoint_deadline_seconds <= self.termination_grace_period_seconds,
                "spec.checkpointDeadlineSeconds",
                MSG_DEADLINE_GRACE,
            ),
        )
        for ok, field, message in checks:
            if not ok:
                _fail(field, message)
        allow_privileged = bool((info.context or {}).get("allow_privileged", False))
        try:
            check_pod_template(self.pod_template, allow_privileged=allow_privileged)
        except InvalidSpec as exc:
            _fail(exc.field, exc.message)
        if self.checkpoint.dir is not None:
            mounts = worker_mount_paths(self.pod_template)
            if self.storage.fsx is not None:
                mounts.append(self.storage.fsx.mount_path)
            if not any(rules.path_within(self.checkpoint.dir, m) for m in mounts):
                _fail(
                    "spec.checkpoint.dir", MSG_CKPT_DIR_MOUNTED + f"; got {self.checkpoint.dir!r}"
                )
        return self

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, allow_privileged: bool = False) -> TrainingJobSpec:
        """Parse `spec` as stored by the API server; every problem becomes one `InvalidSpec`.

        `allow_privileged`: the operator's configuration lets podTemplate set privileged and
        host-level fields (api/podtemplate.py).
        """
        if not isinstance(raw, Mapping):
            raise InvalidSpec("spec", "spec must be an object: fix the TrainingJob")
        try:
            return cls.model_validate(dict(raw), context={"allow_privileged": allow_privileged})
        except ValidationError as exc:
            raise _to_invalid_spec(exc) from None


def _to_invalid_spec(exc: ValidationError) -> InvalidSpec:
    """The first error, with a field path users can find in their YAML and a hint of the fix."""
    err = exc.errors(include_url=False)[0]
    ctx = err.get("ctx") or {}
    if err["type"] == "kubetrain_invalid":
        field, message = str(ctx["field"]), str(ctx["message"])
        index = next((part for part in err["loc"] if isinstance(part, int)), None)
        if index is not None and "[]" in field:
            # Name the list item: "spec.env[3].name" is findable in a long env list.
            message = message.replace(field, field.replace("[]", f"[{index}]", 1), 1)
            field = field.replace("[]", f"[{index}]", 1)
        return InvalidSpec(field, message)
    path = "spec"
    for part in err["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    # Unions report the failing branch as a trailing loc element ("int", "literal['auto']", ...).
    path = re.sub(r"\.(str|int|bool|literal\[[^\]]*\]|list\[.*|dict\[.*)$", "", path)
    kind = err["type"]
    if kind == "missing":
        return InvalidSpec(path, f"{path} is required: add it to the TrainingJob")
    if kind == "extra_forbidden":
        return InvalidSpec(
            path, f"{path} is not a TrainingJob field: remove it or fix its spelling"
        )
    return InvalidSpec(path, f"{path}: {err['msg']} (got {err.get('input')!r}): fix the value")


def validate_job_name(name: str) -> None:
    """The CRD's metadata.name rule, for callers that build names outside the API server."""
    if len(name) > MAX_JOB_NAME or not re.match(JOB_NAME_PATTERN, name):
        raise InvalidSpec("metadata.name", MSG_METADATA_NAME + f"; got {name!r}")


ROOT_VALIDATIONS = [
    _rule(
        f"size(self.metadata.name) <= {MAX_JOB_NAME} && self.metadata.name.matches('{JOB_NAME_PATTERN}')",
        # No fieldPath: metadata declares no properties in the schema, so the API server would
        # reject the path; the message names the field instead.
        MSG_METADATA_NAME,
    )
]

# --- status --------------------------------------------------------------------------------------


class _Status(BaseModel):
    """Status parts: lenient on read (ignore fields an older operator wrote), camelCase.

    Mutable, with every assignment validated: the reconcile core computes the next status on
    these models, so a field they do not declare cannot be written (it raises) and a wrong type
    never reaches the API server.
    """

    model_config = ConfigDict(
        validate_assignment=True,
        populate_by_name=True,
        alias_generator=to_camel,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


RFC3339 = Field(default=None, json_schema_extra={"format": "date-time"})


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = RFC3339
    observed_generation: int | None = None


class NodeCounts(_Status):
    ready: int = 0
    total: int = 0


class SizeStatus(_Status):
    """An elastic job's gang size (spec.minNodes set): what runs, what the spec asks, and why."""

    current: int = Field(description="Worker pods of the current attempt.")
    desired: int = Field(description="spec.nodes.")
    reason: str | None = Field(default=None, description="Why current differs from desired.")


class RestartCounts(_Status):
    failures: int = 0
    interruptions: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Shown in the Restarts printer column (JSONPath cannot add)."""
        return self.failures + self.interruptions


class CheckpointStatus(_Status):
    id: str | None = None
    step: int
    uri: str
    kind: Literal["periodic", "emergency"]
    committed_at: str | None = RFC3339


class Interruption(_Status):
    node: str | None = Field(
        default=None, description="The node that went away; absent for a spec change."
    )
    pod: str | None = Field(
        default=None,
        description="The pod that went away, when its node is not known (a pod deleted while "
        "the operator was down).",
    )
    source: str | None = None
    reason: str | None = None
    detected_at: str | None = RFC3339
    requested_at: str | None = RFC3339
    deadline: str | None = RFC3339
    deadline_source: str | None = Field(
        default=None,
        description="Where the deadline came from: the node's spot notice, or "
        "spec.checkpointDeadlineSeconds after detection.",
    )
    committed_at: str | None = RFC3339
    checkpoint_step: int | None = None
    lost_steps: int | None = None
    resumed_at: str | None = RFC3339
    attempt: int | None = None


class ProgressStatus(_Status):
    """The newest training step rank 0 reported (kubetrain.api.protocol.Progress)."""

    step: int
    time: str | None = RFC3339
    attempt: int | None = None


MAX_INTERRUPTIONS_KEPT = 20
MAX_ATTEMPTS_KEPT = 20


class AttemptTimes(_Status):
    """When one attempt reached each stage (goodput accounting; all from recorded events)."""

    attempt: int
    created_at: str | None = RFC3339
    running_at: str | None = Field(
        default=None, description="Every rank running.", json_schema_extra={"format": "date-time"}
    )
    first_step: int | None = None
    first_step_at: str | None = RFC3339
    last_step: int | None = None
    last_step_at: str | None = RFC3339
    saving_seconds: float | None = Field(
        default=None, description="Training time rank 0 spent in checkpoint saves."
    )
    reached_step: int | None = Field(
        default=None, description="The step the attempt had reached (the next attempt's report)."
    )
    lost_steps: int | None = Field(
        default=None, description="Steps done after the checkpoint the next attempt resumed from."
    )
    ended_at: str | None = RFC3339


class TimeSplit(_Status):
    """Where wall time went, in seconds."""

    productive: float = Field(default=0.0, description="Training steps that were kept.")
    startup: float = Field(
        default=0.0, description="Every rank running to the first step (restore, warm-up)."
    )
    checkpointing: float = Field(default=0.0, description="Training stalled by checkpoint saves.")
    waiting: float = Field(
        default=0.0, description="Attempt created to every rank running (capacity, scheduling)."
    )
    backoff: float = Field(
        default=0.0, description="Attempt ended to the next one created (teardown and backoff)."
    )
    recompute: float = Field(
        default=0.0, description="Redoing steps lost since the last checkpoint before a restart."
    )
    stalled: float = Field(
        default=0.0,
        description="Running but making no step: a hang, or a gang winding down before a restart.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def wall(self) -> float:
        return round(
            self.productive
            + self.startup
            + self.checkpointing
            + self.waiting
            + self.backoff
            + self.recompute
            + self.stalled,
            1,
        )


class Goodput(_Status):
    """Useful training time over wall time, as of the newest recorded event of each attempt."""

    ratio: float | None = Field(default=None, description="productive / wall")
    total: TimeSplit = Field(default_factory=TimeSplit)
    earlier: TimeSplit | None = Field(
        default=None, description="What attempts no longer listed contributed to total."
    )
    attempts: list[AttemptTimes] = Field(default_factory=list, max_length=MAX_ATTEMPTS_KEPT)


Phase = Literal[
    "Pending",
    "Starting",
    "Running",
    "Checkpointing",
    "Restarting",
    "Succeeded",
    "Failed",
    "Suspended",
    "Queued",
]
PHASES: tuple[str, ...] = get_args(Phase)


class TrainingJobStatus(_Status):
    """What the operator writes under `status` (by alias). The CRD prunes any other field."""

    phase: Phase | None = None
    observed_generation: int | None = None
    attempt: int = Field(default=0, description="Current attempt; 0 before the first.")
    conditions: list[Condition] = Field(default_factory=list, max_length=32)
    nodes: NodeCounts = Field(default_factory=NodeCounts)
    size: SizeStatus | None = None
    restarts: RestartCounts = Field(default_factory=RestartCounts)
    checkpoint: CheckpointStatus | None = None
    progress: ProgressStatus | None = None
    goodput: Goodput | None = None
    interruptions: list[Interruption] = Field(
        default_factory=list, max_length=MAX_INTERRUPTIONS_KEPT
    )
    start_time: str | None = RFC3339
    completion_time: str | None = RFC3339
    attempt_start_time: str | None = RFC3339
    # When the current attempt's pods went to nodes: the operator lifted its scheduling gates, or
    # (native PodGroups) the scheduler bound the group. Unset while either holds them, holding no
    # node; startupTimeoutSeconds counts from here.
    release_time: str | None = RFC3339
    # Released on counted room: every pod must be bound by then (spec.gangBindTimeoutSeconds).
    bind_deadline: str | None = RFC3339
    restart_after: str | None = RFC3339
    zone: str | None = None
    resume_manifest: str | None = None
    message: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nodes_ready(self) -> str:
        """ "ready/total" for the Ready printer column (JSONPath cannot format)."""
        return f"{self.nodes.ready}/{self.nodes.total}"


def printer_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """The derived status fields the printer columns read (`nodesReady`, `restarts.total`).

    For writers that build status as a camelCase dict instead of dumping `TrainingJobStatus` (which
    computes them): merge this into every status write so `kubectl get tj` stays current.
    """
    nodes = status.get("nodes") or {}
    restarts = dict(status.get("restarts") or {})
    restarts["total"] = int(restarts.get("failures", 0)) + int(restarts.get("interruptions", 0))
    return {
        "nodesReady": f"{int(nodes.get('ready', 0))}/{int(nodes.get('total', 0))}",
        "restarts": restarts,
    }
