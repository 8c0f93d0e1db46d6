"""From a TrainingJob body to what decide needs: a Target to run, or the reason it cannot run.

The only place that knows both the API models and the builders' call shapes, so a change in
either touches one small function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetrain.api.constants import SPEC_CAPACITY_TYPES, GangScheduling
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import (
    JobRef,
    Placement,
    build_attempt,
    build_pod,
    completion_ranks,
    gated,
    pod_name,
    release_patch,
    resolve,
)
from kubetrain.build.placement import INSTANCE_TYPE, ZONE
from kubetrain.config import operator_config
from kubetrain.reconcile.observe import pod_view
from kubetrain.reconcile.plan import Invalid, PlacementNeeds, Policy, Target


def job_ref(body: Mapping[str, Any]) -> JobRef:
    meta = body.get("metadata") or {}
    return JobRef(name=str(meta["name"]), namespace=str(meta["namespace"]), uid=str(meta["uid"]))


def to_target(
    body: Mapping[str, Any], gang: GangScheduling = GangScheduling.KUBETRAIN
) -> Target | Invalid:
    """Parse and resolve the spec once; semantic errors become `Invalid` (never an exception).
    `gang`: the operator's gang scheduling mode, chosen at startup, for the attempts built."""
    ref = job_ref(body)
    config = operator_config()
    try:
        spec = TrainingJobSpec.parse(
            body.get("spec") or {}, allow_privileged=config.allow_privileged_pods
        )
        resolved = resolve(spec)
    except InvalidSpec as exc:
        return Invalid(exc.field, exc.message)
    try:
        pod_name(ref.name, 1, max(spec.nodes - 1, 0))  # names must fit before anything is built
    except ValueError as exc:
        return Invalid("metadata.name", f"metadata.name: {exc}; use a shorter TrainingJob name")
    fp = spec.failure_policy
    policy = Policy(
        nodes=spec.nodes,
        max_restarts=fp.max_restarts,
        max_interruptions=fp.max_interruptions,
        backoff_seconds=fp.backoff_seconds,
        startup_timeout_seconds=spec.startup_timeout_seconds,
        gang_bind_timeout_seconds=spec.gang_bind_timeout_seconds,
        suspend=spec.suspend,
        ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
        success_ranks=tuple(completion_ranks(resolved)),
        checkpoint_deadline_seconds=spec.checkpoint_deadline_seconds,
        progress_timeout_seconds=fp.progress_timeout_seconds,
        first_progress_timeout_seconds=fp.first_progress_timeout_seconds,
        min_nodes=spec.min_nodes,
        shrink_after_seconds=spec.shrink_after_seconds,
    )
    # What one pod requests, read back from a built pod: the builders are the one definition.
    sample_pod = build_pod(ref, resolved, 1, 0)
    sample = pod_view(sample_pod)
    selector = (sample_pod.get("spec") or {}).get("nodeSelector") or {}
    placement = PlacementNeeds(
        instance_type=spec.accelerator.instance_type,
        capacity_types=SPEC_CAPACITY_TYPES.get(spec.capacity.type, ()),
        zone=spec.capacity.zone,
        per_pod=sample.requests if sample else (),
        node_selector=tuple(
            sorted((k, str(v)) for k, v in selector.items() if k not in (INSTANCE_TYPE, ZONE))
        ),
        provisioner_labels=config.provisioner_node_labels,
    )

    def build(
        attempt: int,
        resume: str | None,
        placement: Placement | None = None,
        size: int | None = None,
        /,
    ) -> list[dict[str, Any]]:
        sized = resolved if size is None else resolved.with_nodes(size)
        return build_attempt(
            ref, sized, attempt, resume_manifest=resume, placement=placement, gang=gang
        )

    def name(attempt: int, rank: int) -> str:
        return pod_name(ref.name, attempt, rank)

    def release(attempt: int, placement: Placement | None) -> dict[str, Any]:
        # Every rank's scheduling constraints are the same: rank 0's, as created (gated).
        (pod,) = gated([build_pod(ref, resolved, attempt, 0)])
        return release_patch(pod, placement)

    return Target(
        policy=policy,
        build=build,
        pod_name=name,
        sample_pod=lambda: build_pod(ref, resolved, 1, 0),
        placement=placement,
        spec_hash=resolved.spec_hash,
        release=release,
        gang=gang,
    )
