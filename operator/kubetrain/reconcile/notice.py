"""Interruptions with notice inside one pass: detect, put the request on every pod, wait, settle.

The pure rules live in `interrupt`; this module applies them to the status being computed and
says whether the gang must restart (`decide` does the restart itself, with the budgets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetrain.api.constants import COND_CHECKPOINTING
from kubetrain.reconcile import interrupt as itr
from kubetrain.reconcile.classify import Outcome, RankState
from kubetrain.reconcile.draft import Draft
from kubetrain.reconcile.observe import PodView, parse_committed
from kubetrain.reconcile.plan import Observed, PodAnnotate, Policy
from kubetrain.status import (
    REASON_CHECKPOINT_ABANDONED,
    REASON_CHECKPOINT_COMMITTED,
    REASON_CHECKPOINT_DEADLINE_MISSED,
    REASON_CHECKPOINT_REQUESTED,
    REASON_INTERRUPTION_DETECTED,
    is_true,
    rfc3339,
)


def settle_request(
    draft: Draft, rank0: PodView | None, request: itr.OpenRequest | None = None
) -> tuple[bool, str]:
    """Close the red request out (if any): (answered by a commit, words for the messages).

    Answered = rank 0 echoed the request id, or a newer checkpoint than the one known when the
    request went out was committed (a SIGTERM-initiated save that raced the request). Otherwise
    the gang resumes from status.checkpoint: only ever a checkpoint some rank 0 reported as
    committed, never a partial one.
    """
    records = draft.records()
    attempt = int(draft.status["attempt"])
    if request is None:
        request = itr.open_request(records, draft.job.name, attempt, draft.now)
        if request is None or request.level != itr.RED:
            return False, ""
    commit = parse_committed(rank0.committed) if rank0 else None
    checkpoint = draft.status.get("checkpoint") or {}
    before = records[request.members[0]].get("checkpointStep")
    answered: dict[str, Any] | None = None
    if commit is not None and commit.get("id") == request.id:
        answered = commit
    elif checkpoint.get("kind") == "emergency" and (
        before is None or int(checkpoint.get("step") or 0) > int(before)
    ):
        answered = checkpoint
    step = checkpoint.get("step")
    itr.conclude(records, request, draft.now, answered, None if step is None else int(step))
    draft.set_records(records)
    if answered is not None:
        words = f"checkpoint at step {int(answered.get('step') or 0)} committed"
        draft.cond(
            COND_CHECKPOINTING, False, REASON_CHECKPOINT_COMMITTED, f"request {request.id}: {words}"
        )
        return True, words
    where = f"the checkpoint at step {step}" if step is not None else "scratch (no checkpoint)"
    if draft.now >= request.deadline:
        words = f"no checkpoint by the deadline {rfc3339(request.deadline)}; resuming from {where}"
        reason = REASON_CHECKPOINT_DEADLINE_MISSED
    else:
        words = f"the gang stopped before committing; resuming from {where}"
        reason = REASON_CHECKPOINT_ABANDONED
    draft.cond(COND_CHECKPOINTING, False, reason, f"request {request.id}: {words}")
    return False, words


def handle(
    draft: Draft,
    policy: Policy,
    states: Sequence[RankState],
    gang: Sequence[PodView],
    observed: Observed,
) -> tuple[str, str]:
    """Detect, request, wait: ("none" | "wait" | "restart", words for the restart message).

    Red: every pod gets the request; wait for rank 0's commit with its id, the deadline, or any
    rank stopping; then restart. Yellow: the same request with `then: continue`; the commit just
    closes it (status.checkpoint advances, no restart).
    """
    attempt = int(draft.status["attempt"])
    records = draft.records()
    checkpoint = draft.status.get("checkpoint") or {}
    step = checkpoint.get("step")
    added = itr.record(
        records,
        itr.detect(gang, observed.nodes),
        job=draft.job.name,
        attempt=attempt,
        now=draft.now,
        default_deadline_seconds=policy.checkpoint_deadline_seconds,
        checkpoint_step=None if step is None else int(step),
    )
    for new in added:  # before trimming to the newest entries: `new.index` is into `records`
        sig = new.signal
        if new.deadline_source is None:
            plan = "joins the checkpoint request already out"
        elif sig.level == itr.YELLOW:
            plan = "asking every pod for an opportunistic checkpoint (training continues)"
        else:
            plan = "asking every pod for an emergency checkpoint, then restarting elsewhere"
        deadline = records[new.index].get("deadline")
        source = f", deadline {deadline} from {new.deadline_source}" if new.deadline_source else ""
        draft.note(
            REASON_INTERRUPTION_DETECTED,
            f"attempt {attempt}: node {sig.node} {sig.source} ({sig.reason}); {plan}{source}",
        )
    draft.set_records(records)
    records = draft.records()
    request = itr.open_request(records, draft.job.name, attempt, draft.now)
    rank0 = next((p for p in gang if p.rank == 0), None)
    yellow = [
        i
        for i, r in enumerate(records)
        if r.get("attempt") == attempt
        and itr.level_of(r) == itr.YELLOW
        and not r.get("committedAt")
    ]
    if request is None or request.level == itr.YELLOW:
        _settle_yellow(draft, records, yellow, request, rank0, gang)
        return "none", ""
    commit = parse_committed(rank0.committed) if rank0 else None
    stopped = any(s.outcome is Outcome.FAILED or (s.pod and s.pod.finished) for s in states)
    matched = commit is not None and commit.get("id") == request.id
    if matched or stopped or draft.now >= request.deadline:
        head = records[request.members[0]]
        _, words = settle_request(draft, rank0, request)
        return "restart", f"node {head.get('node')} {head.get('source')}: {words}"
    _ask(draft, request, gang)
    head = records[request.members[0]]
    draft.cond(
        COND_CHECKPOINTING,
        True,
        REASON_CHECKPOINT_REQUESTED,
        f"attempt {attempt}: node {head.get('node')} {head.get('source')} ({request.reason}); "
        f"every pod asked for an emergency checkpoint by {rfc3339(request.deadline)} "
        f"(request {request.id}); the gang restarts elsewhere once rank 0 commits",
    )
    return "wait", ""


def _settle_yellow(
    draft: Draft,
    records: list[dict[str, Any]],
    open_yellow: Sequence[int],
    request: itr.OpenRequest | None,
    rank0: PodView | None,
    gang: Sequence[PodView],
) -> None:
    """A rebalance request: closed by rank 0's commit with its id, or dropped at its deadline."""
    if request is None:
        if open_yellow and is_true(draft.conditions, COND_CHECKPOINTING):
            draft.cond(
                COND_CHECKPOINTING,
                False,
                REASON_CHECKPOINT_DEADLINE_MISSED,
                "no opportunistic checkpoint by the rebalance request's deadline; training goes on",
            )
        return
    commit = parse_committed(rank0.committed) if rank0 else None
    if commit is not None and commit.get("id") == request.id:
        itr.conclude(records, request, draft.now, commit, None)
        draft.set_records(records)
        draft.cond(
            COND_CHECKPOINTING,
            False,
            REASON_CHECKPOINT_COMMITTED,
            f"request {request.id}: opportunistic checkpoint at step "
            f"{int(commit.get('step') or 0)} committed; training continues",
        )
        return
    _ask(draft, request, gang)
    draft.cond(
        COND_CHECKPOINTING,
        True,
        REASON_CHECKPOINT_REQUESTED,
        f"rebalance recommendation: every pod asked for an opportunistic checkpoint by "
        f"{rfc3339(request.deadline)} (request {request.id}); training continues",
    )


def _ask(draft: Draft, request: itr.OpenRequest, gang: Sequence[PodView]) -> None:
    """Put the request on every pod still missing it, and look again at its deadline."""
    for pod_name, wanted in itr.missing_requests(gang, request):
        draft.annotates.append(PodAnnotate(pod_name, wanted))
    draft.wake_at = request.deadline
