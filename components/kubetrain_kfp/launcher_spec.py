"""Pure builders for the EKS launcher: component inputs -> a TrainingJob manifest, and a finished
TrainingJob -> the component's outputs. No Kubernetes calls, so every rule is unit-tested."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetrain_kfp import validate as v
from kubetrain_kfp.constants import (
    ANNOTATION_KFP_SPEC_HASH,
    API_VERSION,
    ENV_EXPORT_URI,
    KIND,
    LABEL_KFP_RUN,
    LABEL_KFP_TASK,
)
from kubetrain_kfp.naming import label_value, spec_hash
from kubetrain_kfp.outputs import integral

CAPACITY_TYPES = ("any", "spot", "on-demand", "spot-then-on-demand")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_spec(
    *,
    image: str = "",
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    nodes: int = 0,
    instance_type: str = "",
    accelerator: str = "",
    accelerators_per_node: int = 0,
    efa_interfaces: str = "",
    fsx_claim_name: str = "",
    fsx_mount_path: str = "",
    checkpoint_dir: str = "",
    checkpoint_s3_uri: str = "",
    capacity_type: str = "",
    max_restarts: int = -1,
    max_interruptions: int = -1,
    env: Mapping[str, object] | None = None,
    base_spec: Mapping[str, Any] | None = None,
    export_uri: str = "",
) -> dict[str, Any]:
    """`base_spec` (the optional full TrainingJob spec) with every non-empty input laid on top.

    Empty/zero/-1 inputs mean "not given": the full spec or the operator's defaults apply.
    """
    spec: dict[str, Any] = integral(copy.deepcopy(dict(base_spec or {})))
    over: dict[str, Any] = {}
    if image:
        over["image"] = image
    if command:
        over["command"] = list(command)
    if args:
        over["args"] = list(args)
    if nodes:
        over["nodes"] = int(v.positive(nodes, "nodes"))
    accel: dict[str, Any] = {}
    if accelerator:
        accel["kind"] = v.one_of(accelerator, "accelerator", v.ACCELERATORS)
    if instance_type:
        accel["instanceType"] = v.ec2_instance_type(instance_type)
    if accelerators_per_node:
        accel["perNode"] = int(v.positive(accelerators_per_node, "accelerators_per_node"))
    if accel:
        over["accelerator"] = accel
    if efa_interfaces:
        if efa_interfaces != "auto" and not efa_interfaces.isdigit():
            raise v.InputError(
                f"input 'efa_interfaces' = {efa_interfaces!r} must be 'auto' or a number (0 = off)"
            )
        over["efa"] = {"interfaces": "auto" if efa_interfaces == "auto" else int(efa_interfaces)}
    if fsx_claim_name:
        fsx: dict[str, Any] = {"claimName": fsx_claim_name}
        if fsx_mount_path:
            fsx["mountPath"] = fsx_mount_path
        over["storage"] = {"fsx": fsx}
    ckpt: dict[str, Any] = {}
    if checkpoint_dir:
        if not checkpoint_dir.startswith("/"):
            raise v.InputError(
                f"input 'checkpoint_dir' = {checkpoint_dir!r} must be an absolute path in the "
                "pod (e.g. /fsx/checkpoints/my-job); S3 locations go in 'checkpoint_s3_uri'"
            )
        ckpt["dir"] = checkpoint_dir
    if checkpoint_s3_uri:
        ckpt["s3Uri"] = v.s3_uri(checkpoint_s3_uri, "checkpoint_s3_uri")
    if ckpt:
        over["checkpoint"] = ckpt
    if capacity_type:
        over["capacity"] = {"type": v.one_of(capacity_type, "capacity_type", CAPACITY_TYPES)}
    policy: dict[str, Any] = {}
    if max_restarts >= 0:
        policy["maxRestarts"] = int(max_restarts)
    if max_interruptions >= 0:
        policy["maxInterruptions"] = int(max_interruptions)
    if policy:
        over["failurePolicy"] = policy
    if env:
        over["env"] = [{"name": k, "value": s} for k, s in v.string_map(env, "env").items()]
    if export_uri:
        v.s3_uri(export_uri, "export_uri")
        current = over.get("env", spec.get("env") or [])  # a list replaces the base's list
        over["env"] = [
            *[e for e in current if e.get("name") != ENV_EXPORT_URI],
            {"name": ENV_EXPORT_URI, "value": export_uri},
        ]
    spec = _merge(spec, over)
    v.require(
        str(spec.get("image", "")), "image", "give the training container image (or spec.image)"
    )
    if not spec.get("command"):
        raise v.InputError(
            "input 'command' is required: give the training command (or spec.command)"
        )
    return spec


def build_manifest(
    name: str, namespace: str, spec: Mapping[str, Any], run_id: str, task_name: str
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                LABEL_KFP_RUN: label_value(run_id) or "unknown",
                LABEL_KFP_TASK: label_value(task_name) or "unknown",
            },
            "annotations": {ANNOTATION_KFP_SPEC_HASH: spec_hash(spec)},
        },
        "spec": dict(spec),
    }


@dataclass(frozen=True)
class Outcome:
    """A TrainingJob's result as the component reports it (all JSON-clean)."""

    job_name: str
    phase: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return max((parse(end) - parse(start)).total_seconds(), 0.0)


def s3_checkpoint_uri(s3_root: str, committed_uri: str) -> str:
    """The S3 mirror's copy of a committed checkpoint: `<s3Uri>/data/<step-...-id>/` for the
    manifest `<any tier>/manifests/<step-...-id>.json` that status.checkpoint reports."""
    name = committed_uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
    if not name.startswith("step-"):
        return ""
    return f"{s3_root.rstrip('/')}/data/{name}/"


def model_location(spec: Mapping[str, Any], status: Mapping[str, Any], export_uri: str) -> str:
    """What the Model output points at: the export when the job was given one, else the
    committed checkpoint in S3 when the job mirrors there, else where the cluster has it."""
    ckpt_spec, ckpt_status = spec.get("checkpoint") or {}, status.get("checkpoint") or {}
    if export_uri:
        return export_uri
    committed = str(ckpt_status.get("uri") or "")
    if ckpt_spec.get("s3Uri") and committed:
        return s3_checkpoint_uri(ckpt_spec["s3Uri"], committed) or committed
    return committed or str(ckpt_spec.get("s3Uri") or ckpt_spec.get("dir") or "")


def outcome(obj: Mapping[str, Any], export_uri: str = "", watched_seconds: float = 0.0) -> Outcome:
    """Outputs from a finished TrainingJob: the export or checkpoint URI, and metrics."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ckpt_status = status.get("checkpoint") or {}
    model_uri = model_location(spec, status, export_uri)
    interruptions = status.get("interruptions") or []
    restarts = status.get("restarts") or {}
    wall = _seconds_between(status.get("startTime"), status.get("completionTime"))
    metrics = {
        "attempts": float(status.get("attempt") or 0),
        "interruptions": float(restarts.get("interruptions", len(interruptions))),
        "failures": float(restarts.get("failures", 0)),
        "lost_steps": float(sum(int(i.get("lostSteps") or 0) for i in interruptions)),
        "wall_seconds": round(wall if wall is not None else watched_seconds, 3),
    }
    if "step" in ckpt_status:
        metrics["checkpoint_step"] = float(ckpt_status["step"])
    meta = obj.get("metadata") or {}
    return Outcome(
        job_name=str(meta.get("name", "")),
        phase=str(status.get("phase", "")),
        model_uri=str(model_uri),
        metrics=metrics,
        metadata={
            "training_job": f"{meta.get('namespace', '')}/{meta.get('name', '')}",
            "checkpoint_uri": str(ckpt_status.get("uri", "")),
            "checkpoint_step": ckpt_status.get("step"),
            "checkpoint_kind": str(ckpt_status.get("kind", "")),
            "image": str(spec.get("image", "")),
            "nodes": spec.get("nodes"),
            "backend": "eks",
        },
    )
