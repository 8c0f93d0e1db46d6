"""EC2 instance facts that training defaults derive from.

Every AWS sample hardcodes `GPU_PER_NODE`/`EFA_PER_NODE` and forgets memory requests; here the
instance type is the one input and `kubetrain.build.resolve` derives accelerators, processes, EFA
devices, hugepages, cpu/memory requests and /dev/shm from these rows. Numbers are AWS's published
specs (vCPU, GiB, accelerators, maximum EFA interfaces). An instance type missing here is still
usable: the job must then state those values itself (see `resolve`).

HyperPod nodes carry `ml.`-prefixed types (`ml.p5.48xlarge`); `lookup` accepts both spellings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AcceleratorKind = Literal["nvidia", "neuron", "none"]


@dataclass(frozen=True)
class InstanceProfile:
    name: str
    accelerator_kind: AcceleratorKind
    accelerators: int  # GPUs, or Neuron devices (aws.amazon.com/neuron)
    neuron_cores: int  # NeuronCores the runtime exposes at default settings (0 for GPUs)
    efa_interfaces: int  # maximum vpc.amazonaws.com/efa devices
    vcpu: int
    memory_gib: int
    accelerator_name: str = ""  # "H100", "Trainium2", ... for messages and docs
    efa_rdma: bool = (
        False  # EFA supports RDMA read (GPUDirect / Neuron direct): p4d and newer, trn*
    )

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def cores_per_device(self) -> int:
        """NeuronCores per Neuron device: one training process runs per core."""
        return self.neuron_cores // self.accelerators if self.neuron_cores else 0


def _gpu(
    name: str, gpus: int, efa: int, vcpu: int, mem: int, gpu: str, rdma: bool = False
) -> InstanceProfile:
    return InstanceProfile(name, "nvidia", gpus, 0, efa, vcpu, mem, gpu, rdma)


def _neuron(
    name: str, devices: int, cores: int, efa: int, vcpu: int, mem: int, chip: str
) -> InstanceProfile:
    return InstanceProfile(name, "neuron", devices, cores, efa, vcpu, mem, chip, efa > 0)


# (size, gpus, efa, vcpu, memory GiB) for the g families, which share their size ladder.
_G_SIZES: dict[str, tuple[tuple[str, int, int, int, int], ...]] = {
    "g4dn": (
        ("xlarge", 1, 0, 4, 16),
        ("2xlarge", 1, 0, 8, 32),
        ("4xlarge", 1, 0, 16, 64),
        ("8xlarge", 1, 1, 32, 128),
        ("12xlarge", 4, 1, 48, 192),
        ("16xlarge", 1, 1, 64, 256),
        ("metal", 8, 1, 96, 384),
    ),
    "g5": (
        ("xlarge", 1, 0, 4, 16),
        ("2xlarge", 1, 0, 8, 32),
        ("4xlarge", 1, 0, 16, 64),
        ("8xlarge", 1, 1, 32, 128),
        ("12xlarge", 4, 1, 48, 192),
        ("16xlarge", 1, 1, 64, 256),
        ("24xlarge", 4, 1, 96, 384),
        ("48xlarge", 8, 1, 192, 768),
    ),
    "g6": (
        ("xlarge", 1, 0, 4, 16),
        ("2xlarge", 1, 0, 8, 32),
        ("4xlarge", 1, 0, 16, 64),
        ("8xlarge", 1, 1, 32, 128),
        ("12xlarge", 4, 1, 48, 192),
        ("16xlarge", 1, 1, 64, 256),
        ("24xlarge", 4, 1, 96, 384),
        ("48xlarge", 8, 1, 192, 768),
    ),
    "g6e": (
        ("xlarge", 1, 0, 4, 32),
        ("2xlarge", 1, 0, 8, 64),
        ("4xlarge", 1, 0, 16, 128),
        ("8xlarge", 1, 1, 32, 256),
        ("12xlarge", 4, 1, 48, 384),
        ("16xlarge", 1, 1, 64, 512),
        ("24xlarge", 4, 2, 96, 768),
        ("48xlarge", 8, 4, 192, 1536),
    ),
}
_G_GPU = {"g4dn": "T4", "g5": "A10G", "g6": "L4", "g6e": "L40S"}

PROFILES: dict[str, InstanceProfile] = {
    p.name: p
    for p in (
        _gpu("p3.2xlarge", 1, 0, 8, 61, "V100"),
        _gpu("p3.8xlarge", 4, 0, 32, 244, "V100"),
        _gpu("p3.16xlarge", 8, 0, 64, 488, "V100"),
        _gpu("p3dn.24xlarge", 8, 1, 96, 768, "V100"),
        _gpu("p4d.24xlarge", 8, 4, 96, 1152, "A100", rdma=True),
        _gpu("p4de.24xlarge", 8, 4, 96, 1152, "A100-80GB", rdma=True),
        _gpu("p5.48xlarge", 8, 32, 192, 2048, "H100", rdma=True),
        _gpu("p5e.48xlarge", 8, 32, 192, 2048, "H200", rdma=True),
        _gpu("p5en.48xlarge", 8, 16, 192, 2048, "H200", rdma=True),
        _gpu("p6-b200.48xlarge", 8, 8, 192, 2048, "B200", rdma=True),
        *(
            _gpu(f"{family}.{size}", gpus, efa, vcpu, mem, _G_GPU[family])
            for family, sizes in _G_SIZES.items()
            for size, gpus, efa, vcpu, mem in sizes
        ),
        _neuron("trn1.2xlarge", 1, 2, 0, 8, 32, "Trainium"),
        _neuron("trn1.32xlarge", 16, 32, 8, 128, 512, "Trainium"),
        _neuron("trn1n.32xlarge", 16, 32, 16, 128, 512, "Trainium"),
        # 8 physical NeuronCore-v3 per Trainium2 device; the runtime's default logical core size
        # (LNC=2) exposes 4 per device, 64 per instance: one process each.
        _neuron("trn2.48xlarge", 16, 64, 16, 192, 2048, "Trainium2"),
    )
}


def lookup(instance_type: str) -> InstanceProfile | None:
    """The profile for an EC2 (or HyperPod `ml.`) instance type; None when kubetrain does not know it."""
    name = instance_type.strip().lower()
    return PROFILES.get(name.removeprefix("ml."))
