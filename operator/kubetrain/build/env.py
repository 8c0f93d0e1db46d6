"""Container env: distributed (both dialects), the KUBETRAIN_* runtime contract, EFA and Neuron.

The EFA block is deliberately minimal and keyed to the image's network stack (the AWS EFA
cheatsheet): a current stack (aws-ofi-nccl >= 1.7, libfabric >= 1.18, kernel >= 5.15) needs no
FI_* settings at all, older stacks get exactly the ones they need. `RDMAV_FORK_SAFE` is never set
(it breaks fork-heavy data loaders; the CRD also rejects it in spec.env).
"""

from __future__ import annotations

from typing import Any

from kubetrain.api import constants as c
from kubetrain.build.names import JobRef, pod_name, service_name
from kubetrain.build.resolve import Resolved

MASTER_PORT = 29500
# Families where NCCL's shared-memory transport must copy through CUDA (no NVLink / P2P on PCIe).
_SHM_CUDA_MEMCPY_FAMILIES = frozenset({"g5", "g6"})


def _var(name: str, value: object) -> dict[str, Any]:
    # An empty value is written as no value, the form the API server stores, so a built pod and
    # the same pod read back compare equal.
    text = str(value)
    return {"name": name, "value": text} if text else {"name": name}


def _field(name: str, path: str) -> dict[str, Any]:
    # apiVersion is what the API server defaults it to; written out for the same reason.
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def master_addr(job: JobRef, attempt: int) -> str:
    """Rank 0's stable DNS name through the headless Service (hostname + subdomain on the pod)."""
    return f"{pod_name(job.name, attempt, 0)}.{service_name(job.name)}"


def distributed_env(job: JobRef, r: Resolved, attempt: int, rank: int) -> list[dict[str, Any]]:
    """torch's and the Kubeflow (PET_*) dialects, so torchrun, hyperpodrun and plain scripts work.

    RANK and NODE_RANK are the pod's rank (torchrun overwrites RANK per process); WORLD_SIZE counts
    processes across the gang.
    """
    addr = master_addr(job, attempt)
    nodes, procs = r.nodes, r.procs_per_node
    return [
        _var("MASTER_ADDR", addr),
        _var("MASTER_PORT", MASTER_PORT),
        _var("WORLD_SIZE", nodes * procs),
        _var("RANK", rank),
        _var("NODE_RANK", rank),
        _var("NNODES", nodes),
        _var("NPROC_PER_NODE", procs),
        _var("LOCAL_WORLD_SIZE", procs),
        _var("PET_MASTER_ADDR", addr),
        _var("PET_MASTER_PORT", MASTER_PORT),
        _var("PET_NNODES", nodes),
        _var("PET_NPROC_PER_NODE", procs),
        _var("PET_NODE_RANK", rank),
    ]


def checkpoint_dir(job: JobRef, r: Resolved) -> str:
    """spec.checkpoint.dir, else a per-job directory on FSx, else "" (no POSIX tier)."""
    ckpt, fsx = r.spec.checkpoint, r.spec.storage.fsx
    if ckpt.dir is not None:
        return ckpt.dir
    if fsx is not None:
        return f"{fsx.mount_path.rstrip('/')}/checkpoints/{job.name}"
    return ""


def contract_env(
    job: JobRef, r: Resolved, attempt: int, resume_manifest: str | None
) -> list[dict[str, Any]]:
    """The runtime contract: every name is always present; "" means "not configured"."""
    return [
        _var(c.ENV_JOB, job.name),
        _var(c.ENV_ATTEMPT, attempt),
        _var(c.ENV_CHECKPOINT_DIR, checkpoint_dir(job, r)),
        _var(c.ENV_CHECKPOINT_S3_URI, r.spec.checkpoint.s3_uri or ""),
        _var(c.ENV_CHECKPOINT_KEEP, r.spec.checkpoint.keep),
        _var(c.ENV_RESUME_MANIFEST, resume_manifest or ""),
        _field(c.ENV_POD_NAME, "metadata.name"),
        _field(c.ENV_POD_NAMESPACE, "metadata.namespace"),
    ]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def efa_env(r: Resolved) -> list[dict[str, Any]]:
    if r.efa_interfaces == 0:
        return []
    env: list[dict[str, Any]] = []
    rdma = r.profile.efa_rdma if r.profile is not None else False
    if r.spec.accelerator.kind == "neuron":
        # The Neuron collectives' documented multi-node settings (neuronx-distributed on trn1/trn2).
        env += [_var("FI_PROVIDER", "efa"), _var("FI_EFA_FORK_SAFE", 1)]
        if rdma:
            env.append(_var("FI_EFA_USE_DEVICE_RDMA", 1))
        return env
    version = r.spec.efa.aws_ofi_nccl_version
    if version is not None and _version(version) < (1, 7):
        if _version(version) <= (1, 5):
            env += [_var("FI_PROVIDER", "efa"), _var("NCCL_PROTO", "simple")]
        if rdma:
            env.append(_var("FI_EFA_USE_DEVICE_RDMA", 1))
        env.append(_var("FI_EFA_FORK_SAFE", 1))  # stacks this old ship kernels < 5.15
    # NET lines say whether NCCL chose NET/OFI (EFA) or silently fell back to NET/Socket.
    env += [_var("NCCL_DEBUG", "INFO"), _var("NCCL_DEBUG_SUBSYS", "INIT,NET")]
    return env


def accelerator_env(job: JobRef, r: Resolved) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    kind = r.spec.accelerator.kind
    if (
        kind == "nvidia"
        and r.profile is not None
        and r.accelerators_per_node > 1
        and r.profile.family in _SHM_CUDA_MEMCPY_FAMILIES
    ):
        env.append(_var("NCCL_SHM_USE_CUDA_MEMCPY", 1))
    if kind == "neuron" and r.spec.storage.fsx is not None:
        # Compiling a graph takes minutes; a cache on FSx is shared by every rank and attempt.
        cache = f"{r.spec.storage.fsx.mount_path.rstrip('/')}/neuron-cache"
        env.append(_var("NEURON_COMPILE_CACHE_URL", cache))
        env.append(_var("NEURON_CC_FLAGS", f"--cache_dir={cache}"))
    return env


def merge_user_env(
    generated: list[dict[str, Any]], user: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """User entries replace generated ones of the same name in place, others are appended.

    NEURON_CC_FLAGS is the exception: the user's compiler flags keep the FSx cache directory.
    """
    out = [dict(e) for e in generated]
    index = {e["name"]: i for i, e in enumerate(out)}
    for entry in user:
        name = entry["name"]
        if name in index:
            mine = out[index[name]]
            if (
                name == "NEURON_CC_FLAGS"
                and "value" in entry
                and "--cache_dir" not in entry["value"]
            ):
                entry = {"name": name, "value": f"{entry['value']} {mine['value']}".strip()}
            out[index[name]] = entry
        else:
            index[name] = len(out)
            out.append(entry)
    return out


def container_env(
    job: JobRef, r: Resolved, attempt: int, rank: int, resume_manifest: str | None
) -> list[dict[str, Any]]:
    generated = [
        *distributed_env(job, r, attempt, rank),
        *contract_env(job, r, attempt, resume_manifest),
        _var("PYTHONUNBUFFERED", 1),
        *efa_env(r),
        *accelerator_env(job, r),
    ]
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in r.spec.env]
    return merge_user_env(generated, user)
