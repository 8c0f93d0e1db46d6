"""`kubetrain submit --dry-run`: the pods an attempt would get, from the operator's own pure
builders, and the checks `kubectl apply` cannot make (they need the instance profiles, or they
are mistakes the schema allows). Touches no cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Check:
    level: str  # error | warning
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Plan:
    objects: list[dict[str, Any]]  # everything the attempt creates, in creation order
    checks: list[Check]

    @property
    def pods(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == "Pod"]

    @property
    def ok(self) -> bool:
        return not any(c.level == ERROR for c in self.checks)


def _mounted(path: str, mounts: Sequence[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def _template_mounts(pod_template: Mapping[str, Any] | None) -> list[str]:
    spec = (pod_template or {}).get("spec") or {}
    out: list[str] = []
    for container in (spec.get("containers") or []) if isinstance(spec, Mapping) else []:
        out += [str(m.get("mountPath", "")) for m in container.get("volumeMounts") or []]
    return out


def plan(manifest: Mapping[str, Any], *, attempt: int = 1) -> Plan:
    """Parse, resolve and build like the operator would; every problem becomes a Check."""
    from kubetrain.api.errors import InvalidSpec
    from kubetrain.api.models import TrainingJobSpec, validate_job_name
    from kubetrain.build import JobRef, build_attempt, resolve
    from kubetrain.build.env import checkpoint_dir

    meta = manifest.get("metadata") or {}
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
    checks: list[Check] = []
    if manifest.get("kind", "TrainingJob") != "TrainingJob":
        checks.append(Check(ERROR, "kind", f"kind is {manifest.get('kind')!r}, not TrainingJob"))
    try:
        validate_job_name(name)
        spec = TrainingJobSpec.parse(manifest.get("spec") or {})
        resolved = resolve(spec)
    except InvalidSpec as exc:
        checks.append(Check(ERROR, exc.field, exc.message))
        return Plan([], checks)
    job = JobRef(name=name, namespace=namespace, uid="00000000-0000-0000-0000-000000000000")
    objects = build_attempt(job, resolved, attempt)
    ckpt_dir = checkpoint_dir(job, resolved)
    mounts = _template_mounts(spec.pod_template)
    if spec.storage.fsx is not None:
        mounts.append(spec.storage.fsx.mount_path)
    spot = spec.capacity.type in ("spot", "spot-then-on-demand")
    if spot and not ckpt_dir and not spec.checkpoint.s3_uri:
        checks.append(
            Check(
                WARNING,
                "spec.checkpoint",
                "spot capacity without a checkpoint location: every interruption restarts from "
                "step 0; set spec.checkpoint.dir on FSx (spec.storage.fsx) or spec.checkpoint.s3Uri",
            )
        )
    if ckpt_dir and not _mounted(ckpt_dir, mounts):
        checks.append(
            Check(
                WARNING,
                "spec.checkpoint.dir",
                f"{ckpt_dir} is not on a mounted volume: it lives in the container's filesystem "
                "and is gone when the gang restarts; mount FSx (spec.storage.fsx) or a volume "
                "through spec.podTemplate there, or set spec.checkpoint.s3Uri",
            )
        )
    if spec.accelerator.instance_type is None and spec.accelerator.kind != "none":
        checks.append(
            Check(
                WARNING,
                "spec.accelerator.instanceType",
                "no instance type: pods may land on any node with the accelerator, and EFA, cpu "
                "and memory are not derived from a profile; set spec.accelerator.instanceType",
            )
        )
    image = spec.image.rsplit("/", 1)[-1]
    if "@" not in image and (":" not in image or image.endswith(":latest")):
        checks.append(
            Check(
                WARNING,
                "spec.image",
                f"{spec.image} has no fixed tag: a restarted gang may run a different image "
                "than the one it checkpointed with; pin a tag or a digest",
            )
        )
    profile = resolved.profile
    if spec.nodes > 1 and resolved.efa_interfaces == 0 and profile and profile.efa_interfaces:
        checks.append(
            Check(
                WARNING,
                "spec.efa.interfaces",
                f"EFA is off on {profile.name}, which has {profile.efa_interfaces} interfaces: "
                f"collectives across {spec.nodes} nodes go over TCP; set spec.efa.interfaces: auto",
            )
        )
    return Plan(objects, checks)


def pod_summary(pod: Mapping[str, Any]) -> list[str]:
    """[name, node selector, requests, command] for the human table."""
    spec = pod["spec"]
    container = spec["containers"][0]
    resources = container.get("resources") or {}
    requests = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    short = {
        "nvidia.com/gpu": "gpu",
        "aws.amazon.com/neuron": "neuron",
        "vpc.amazonaws.com/efa": "efa",
        "hugepages-2Mi": "hugepages",
    }
    res = ",".join(f"{short.get(k, k)}={v}" for k, v in sorted(requests.items()))
    selector = ",".join(
        f"{k.split('/')[-1]}={v}" for k, v in (spec.get("nodeSelector") or {}).items()
    )
    return [pod["metadata"]["name"], selector, res, " ".join(container.get("command") or [])]
