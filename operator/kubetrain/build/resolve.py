"""Spec + instance profile -> the concrete numbers every pod of the job uses.

Semantic checks that the CRD cannot do (it does not know instance facts) happen here and raise
`InvalidSpec`; the operator reports them as `Failed`/`InvalidSpec` and creates nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from kubetrain.api.constants import LIVE_SPEC_FIELDS
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.api.quantity import GI, gib, parse_quantity
from kubetrain.profiles import InstanceProfile, lookup

# With EFA, libfabric wants 2 MiB hugepages; 5120Mi is what the AWS samples and the HyperPod
# operator request, and what the EKS/Bottlerocket EFA setup reserves.
EFA_HUGEPAGES = "5Gi"  # = 5120Mi, in the canonical form the API server stores
EFA_HUGEPAGES_GIB = 5
MAX_DEFAULT_SHM_GIB = 64


@dataclass(frozen=True)
class Resolved:
    """Everything builders need besides the job's identity and the attempt."""

    spec: TrainingJobSpec
    profile: InstanceProfile | None
    accelerators_per_node: int
    procs_per_node: int
    efa_interfaces: int
    cpu: str
    memory: str
    shm: str
    hugepages: str | None
    # Elastic (spec.minNodes): this attempt runs on fewer pods than spec.nodes. The spec hash stays
    # the spec's: a gang resized by the operator is still built from the same spec.
    size: int | None = None

    @property
    def nodes(self) -> int:
        """Worker pods of the attempt being built."""
        return self.size if self.size is not None else self.spec.nodes

    def with_nodes(self, nodes: int) -> Resolved:
        return dataclasses.replace(self, size=None if nodes == self.spec.nodes else nodes)

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)


def spec_hash(spec: TrainingJobSpec) -> str:
    """A short digest of the spec fields that shape the pods (all but LIVE_SPEC_FIELDS).

    Pods carry it (ANNOTATION_SPEC_HASH): a pass that finds pods of another hash knows the gang
    was built from another spec, so no gang ever mixes two. Fields left at their defaults are
    not hashed, so an operator upgrade that adds a field does not restart every running gang.
    """
    shape = spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    for key in LIVE_SPEC_FIELDS:
        shape.pop(key, None)
    canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolve(spec: TrainingJobSpec) -> Resolved:
    """Derive per-pod values from the instance profile; raise InvalidSpec if the job cannot run."""
    acc = spec.accelerator
    profile = lookup(acc.instance_type) if acc.instance_type else None
    _check_kind(spec, profile)
    per_node = _accelerators(spec, profile)
    share = (
        Fraction(per_node, profile.accelerators)
        if profile and profile.accelerators
        else Fraction(1)
    )
    procs = _procs(spec, profile, per_node)
    efa = _efa(spec, profile, share)
    hugepages = EFA_HUGEPAGES if efa else None
    cpu = _cpu(spec, profile, share)
    memory = _memory(spec, profile, share, efa > 0)
    shm = _shm(spec, memory)
    return Resolved(spec, profile, per_node, procs, efa, cpu, memory, shm, hugepages)


def _unknown(spec: TrainingJobSpec) -> str:
    t = spec.accelerator.instance_type
    if t is None:
        return "spec.accelerator.instanceType is not set"
    return f"spec.accelerator.instanceType {t} is not an instance type kubetrain knows"


def _check_kind(spec: TrainingJobSpec, profile: InstanceProfile | None) -> None:
    kind = spec.accelerator.kind
    if profile is not None and profile.accelerator_kind != kind:
        raise InvalidSpec(
            "spec.accelerator.kind",
            f"spec.accelerator.kind is {kind} but {profile.name} has {profile.accelerators} "
            f"{profile.accelerator_kind} accelerators ({profile.accelerator_name}): "
            f"set spec.accelerator.kind to {profile.accelerator_kind}",
        )


def _accelerators(spec: TrainingJobSpec, profile: InstanceProfile | None) -> int:
    acc = spec.accelerator
    if acc.kind == "none":
        return 0
    if acc.per_node is not None:
        if profile is not None and acc.per_node > profile.accelerators:
            raise InvalidSpec(
                "spec.accelerator.perNode",
                f"spec.accelerator.perNode is {acc.per_node} but {profile.name} has only "
                f"{profile.accelerators} {profile.accelerator_name}: set perNode to at most "
                f"{profile.accelerators}, or choose a larger instance type",
            )
        return acc.per_node
    if profile is None:
        raise InvalidSpec(
            "spec.accelerator.perNode",
            f"{_unknown(spec)}, so spec.accelerator.perNode cannot be derived: set "
            "spec.accelerator.perNode (and spec.resources.cpu/memory), or use a known instance type",
        )
    return profile.accelerators


def _procs(spec: TrainingJobSpec, profile: InstanceProfile | None, per_node: int) -> int:
    kind = spec.accelerator.kind
    if kind == "nvidia":
        return per_node
    if kind == "neuron":
        if profile is None:
            # Cores per device differ by generation (trn1: 2, trn2: 4 at the default LNC=2).
            raise InvalidSpec(
                "spec.accelerator.instanceType",
                f"{_unknown(spec)}, so NeuronCores per device (one process each) are unknown: "
                "use trn1.2xlarge, trn1.32xlarge, trn1n.32xlarge or trn2.48xlarge",
            )
        return per_node * profile.cores_per_device
    return 1


def _efa(spec: TrainingJobSpec, profile: InstanceProfile | None, share: Fraction) -> int:
    requested = spec.efa.interfaces
    if requested == "auto":
        if spec.nodes == 1:
            return 0  # no traffic between instances: EFA would only narrow scheduling
        if profile is not None:
            return math.floor(profile.efa_interfaces * share)
        if spec.accelerator.kind == "none":
            return 0
        raise InvalidSpec(
            "spec.efa.interfaces",
            f"{_unknown(spec)}, so spec.efa.interfaces: auto cannot know its EFA count: set "
            "spec.efa.interfaces to the instance's EFA interfaces (0 for none)",
        )
    assert isinstance(requested, int)
    if requested and profile is not None:
        if profile.efa_interfaces == 0:
            raise InvalidSpec(
                "spec.efa.interfaces",
                f"spec.efa.interfaces is {requested} but {profile.name} has no EFA: set "
                "spec.efa.interfaces to 0, or choose an EFA instance type (e.g. g5.8xlarge, "
                "p4d.24xlarge, p5.48xlarge, trn1.32xlarge)",
            )
        if requested > profile.efa_interfaces:
            raise InvalidSpec(
                "spec.efa.interfaces",
                f"spec.efa.interfaces is {requested} but {profile.name} has at most "
                f"{profile.efa_interfaces}: set it to {profile.efa_interfaces} or less (or auto)",
            )
    return requested


def _cpu(spec: TrainingJobSpec, profile: InstanceProfile | None, share: Fraction) -> str:
    if spec.resources.cpu is not None:
        value = str(spec.resources.cpu)
        if profile is not None and parse_quantity(value) > profile.vcpu:
            raise InvalidSpec(
                "spec.resources.cpu",
                f"spec.resources.cpu is {value} but {profile.name} has {profile.vcpu} vCPUs: "
                f"request less than {profile.vcpu}, or remove it for the default",
            )
        return value
    if profile is None:
        raise InvalidSpec(
            "spec.resources.cpu",
            f"{_unknown(spec)}, so the CPU request cannot be derived (pods are never BestEffort): "
            "set spec.resources.cpu and spec.resources.memory",
        )
    # Leave ~6% (at least one core) for kubelet, the CNI and device-plugin daemons.
    reserved = max(1, math.ceil(profile.vcpu * 0.06))
    return str(max(1, math.floor((profile.vcpu - reserved) * share)))


def _memory(
    spec: TrainingJobSpec, profile: InstanceProfile | None, share: Fraction, efa: bool
) -> str:
    if spec.resources.memory is not None:
        value = str(spec.resources.memory)
        if profile is not None and parse_quantity(value) > profile.memory_gib * GI:
            raise InvalidSpec(
                "spec.resources.memory",
                f"spec.resources.memory is {value} but {profile.name} has {profile.memory_gib}Gi: "
                "request less, or remove it for the default",
            )
        return value
    if profile is None:
        raise InvalidSpec(
            "spec.resources.memory",
            f"{_unknown(spec)}, so the memory request cannot be derived (pods are never "
            "BestEffort): set spec.resources.memory and spec.resources.cpu",
        )
    # ~90% of the instance minus 1Gi (kube-reserved, eviction threshold, daemons), and minus the
    # hugepages EFA pins, which the kubelet takes out of allocatable memory.
    usable = Fraction(profile.memory_gib * 9, 10) - 1 - (EFA_HUGEPAGES_GIB if efa else 0)
    return gib(max(1, math.floor(usable * share)))


def _shm(spec: TrainingJobSpec, memory: str) -> str:
    mem = parse_quantity(memory)
    if spec.storage.shared_memory is not None:
        value = str(spec.storage.shared_memory)
        if parse_quantity(value) >= mem:
            raise InvalidSpec(
                "spec.storage.sharedMemory",
                f"spec.storage.sharedMemory ({value}) counts against the pod's memory ({memory}) "
                "and must be smaller: lower it or raise spec.resources.memory",
            )
        return value
    # DataLoader workers pass batches through /dev/shm; 1/8 of memory, between 1Gi and 64Gi.
    eighth = int(mem / 8 / GI)
    return gib(min(MAX_DEFAULT_SHM_GIB, max(1, eighth))) if mem >= 2 * GI else _half(mem)


def _half(mem: Decimal) -> str:
    """Tiny memory requests (CPU-only test jobs): half the memory, in MiB."""
    return f"{max(1, int(mem / 2 / (1 << 20)))}Mi"
