"""The interruption path's one home: everything that ends an attempt without it being the user's
fault, decided in one call per pass (`assess`).

In order: a node lost or a pod gone (no request can reach them: restart now); a spec edit that
reshapes the pods (a coordinated checkpoint-restart, counted against neither budget); a node
announcing that it is going away (request an emergency checkpoint from every pod, wait for the
commit or the deadline, then restart elsewhere) or recommending a rebalance (an opportunistic
checkpoint, training goes on); a rank that stopped on its own for an infrastructure reason (exit
83 without a request, a disrupted pod). The pure rules over the timeline live in `interrupt`;
`decide` applies the verdict with the budgets.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from kubetrain.api.constants import (
    ANNOTATION_CHECKPOINT_REQUEST,
    COND_CHECKPOINTING,
    REQUEST_REASON_NODE_LOST,
    SOURCE_NODE_DELETED,
    SOURCE_NODE_NOT_READY,
    SOURCE_QUEUE_EVICTION,
    SOURCE_RESIZE,
    SOURCE_SPEC_CHANGE,
    SOURCE_SUSPEND,
)
from kubetrain.api.models import Interruption
from kubetrain.api.protocol import CheckpointCommitted
from kubetrain.reconcile import interrupt as itr
from kubetrain.reconcile import queue
from kubetrain.reconcile.classify import Outcome, RankState
from kubetrain.reconcile.draft import Draft
from kubetrain.reconcile.observe import PodView
from kubetrain.reconcile.plan import Observed, PodAnnotate, Policy
from kubetrain.status import (
    REASON_CHECKPOINT_ABANDONED,
    REASON_CHECKPOINT_COMMITTED,
    REASON_CHECKPOINT_DEADLINE_MISSED,
    REASON_CHECKPOINT_REQUESTED,
    REASON_EVICTED,
    REASON_FINISHED,
    REASON_INTERRUPTED,
    REASON_INTERRUPTION_DETECTED,
    REASON_NODE_LOST,
    REASON_RESIZED,
    REASON_SPEC_CHANGED,
    is_true,
    rfc3339,
)

NODE_LOST_SOURCES = frozenset({SOURCE_NODE_DELETED, SOURCE_NODE_NOT_READY})
# A gang torn down for a restart: whatever could be saved has been (a checkpoint request was
# settled: committed, or its deadline passed) or cannot be (a peer failed or is gone, so the others
# block in their collectives; a hung gang steps no more). Its pods get this grace period instead of
# their own, so the next attempt starts in seconds, inside a spot notice's two minutes.
TEARDOWN_GRACE_SECONDS = 5
# Checkpoint-restarts the operator starts itself (no node is going away): source -> (Ready's
# reason, what happened, what the gang does once rank 0 commits). Counted against neither budget.
# A stop (a Kueue eviction, spec.suspend) releases the pods and waits instead of restarting.
COORDINATED = {
    SOURCE_SPEC_CHANGE: (REASON_SPEC_CHANGED, "the spec changed", "restarts with the new spec"),
    SOURCE_RESIZE: (REASON_RESIZED, "room for every node returned", "restarts at full size"),
    SOURCE_QUEUE_EVICTION: (
        REASON_EVICTED,
        "Kueue evicted the job's Workload",
        "releases its pods and resumes when Kueue admits it again",
    ),
    SOURCE_SUSPEND: (
        REASON_EVICTED,
        "spec.suspend was set",
        "releases its pods and resumes when spec.suspend is unset",
    ),
}


class Next(enum.Enum):
    CARRY_ON = "carry-on"  # nothing ends the attempt here; decide judges the ranks
    WAIT = "wait"  # a checkpoint request is out: hold the gang as it is
    RESTART = "restart"


class Budget(enum.Enum):
    FAILURES = "failures"  # maxRestarts: the user's (a rank failed, the gang hung)
    INTERRUPTIONS = "interruptions"  # maxInterruptions: the infrastructure's
    NONE = "none"  # counted against neither (a spec change)


@dataclass(frozen=True)
class Verdict:
    next: Next
    reason: str = ""  # Ready's reason for a restart: Interrupted | NodeLost | SpecChanged | ...
    cause: str = ""  # words for the restart message
    budget: Budget = Budget.INTERRUPTIONS


CARRY_ON = Verdict(Next.CARRY_ON)
WAIT = Verdict(Next.WAIT)


def assess(
    draft: Draft,
    policy: Policy,
    spec_hash: str,
    states: Sequence[RankState],
    gang: Sequence[PodView],
    observed: Observed,
) -> Verdict:
    """Everything about the current attempt that is not the user's doing, in one verdict."""
    rank0 = next((p for p in gang if p.rank == 0), None)
    lost = [
        s
        for s in states
        if s.outcome is Outcome.INTERRUPTED and (s.source in NODE_LOST_SOURCES or s.pod is None)
    ]
    if lost:  # no request can reach a lost node or a deleted pod: settle any request out
        settle_request(draft, rank0)
        _record(draft, lost)
        return Verdict(Next.RESTART, REASON_NODE_LOST, lost[0].detail)

    if _spec_changed(spec_hash, gang) and not any(p.phase == "Running" for p in gang):
        abandon_request(draft)  # nothing has started training: nothing to checkpoint
        return Verdict(
            Next.RESTART,
            REASON_SPEC_CHANGED,
            "the spec changed before the gang was running",
            budget=Budget.NONE,
        )
    stop = queue.stop_source(observed.queue, policy.suspend)
    if stop is not None and not any(p.phase == "Running" for p in gang):
        abandon_request(draft)  # nothing has started training: nothing to checkpoint
        return Verdict(
            Next.RESTART,
            REASON_EVICTED,
            f"{COORDINATED[stop][1]} before the gang was running",
            budget=Budget.NONE,
        )
    _request_spec_change(draft, policy, spec_hash, gang)
    if stop is not None:
        _request_coordinated(
            draft,
            policy,
            stop,
            f"attempt {draft.attempt}: {COORDINATED[stop][1]}; asking every pod for a checkpoint, "
            "then releasing the gang's pods",
        )
    _detect(draft, policy, gang, observed)
    records = draft.records
    request = itr.open_request(records, draft.job.name, draft.attempt, draft.now)
    if request is None or request.level == itr.YELLOW:
        _settle_yellow(draft, request, rank0, gang)
        interrupted = [s for s in states if s.outcome is Outcome.INTERRUPTED]
        if interrupted:  # stopped on its own: exit 83 on a SIGTERM we did not send, a disruption
            _record(draft, interrupted)
            return Verdict(Next.RESTART, REASON_NODE_LOST, interrupted[0].detail)
        return CARRY_ON
    # Every rank exiting 0 wins over an open request (decide checks success first), so a rank
    # that succeeded is waited for, not taken as the gang breaking down.
    stopped = any(
        s.outcome is Outcome.FAILED
        or (s.pod is not None and s.pod.finished and s.outcome is not Outcome.SUCCEEDED)
        for s in states
    )
    matched = rank0 is not None and _answers(rank0.committed, request.id)
    members = [records[i] for i in request.members]
    nodes = [r for r in members if r.source not in COORDINATED]
    coordinated = None if nodes else COORDINATED[str(members[0].source)]
    if matched or stopped or draft.now >= request.deadline:
        _, words = settle_request(draft, rank0, request)
        if coordinated is not None:
            reason, what, _ = coordinated
            return Verdict(Next.RESTART, reason, f"{what}: {words}", budget=Budget.NONE)
        return Verdict(
            Next.RESTART,
            REASON_INTERRUPTED,
            f"node {nodes[0].node} {nodes[0].source}: {words}",
        )
    _ask(draft, request, gang)
    what = (
        coordinated[1]
        if coordinated is not None
        else f"node {nodes[0].node} {nodes[0].source} ({request.reason})"
    )
    draft.cond(
        COND_CHECKPOINTING,
        True,
        REASON_CHECKPOINT_REQUESTED,
        f"attempt {draft.attempt}: {what}; every pod asked for an emergency checkpoint by "
        f"{rfc3339(request.deadline)} (request {request.id}); once rank 0 commits, the gang "
        + (coordinated[2] if coordinated is not None else "restarts elsewhere"),
    )
    return WAIT


def _answers(commit: CheckpointCommitted | None, request_id: str) -> bool:
    return commit is not None and commit.id == request_id


def settle_request(
    draft: Draft, rank0: PodView | None, request: itr.OpenRequest | None = None
) -> tuple[bool, str]:
    """Close the red request out (if any): (answered by a commit, words for the messages).

    Answered = rank 0 echoed the request id, or a newer checkpoint than the one known when the
    request went out was committed (a SIGTERM-initiated save that raced the request). Otherwise
    the gang resumes from status.checkpoint: only ever a checkpoint some rank 0 reported as
    committed, never a partial one.
    """
    records = draft.records
    if request is None:
        request = itr.open_request(records, draft.job.name, draft.attempt, draft.now)
        if request is None or request.level != itr.RED:
            return False, ""
    commit = rank0.committed if rank0 else None
    checkpoint = draft.status.checkpoint
    step = checkpoint.step if checkpoint else None
    before = records[request.members[0]].checkpoint_step
    answered: int | None = None
    if commit is not None and commit.id == request.id:
        answered = commit.step
    elif (
        checkpoint
        and checkpoint.kind == "emergency"
        and (before is None or checkpoint.step > before)
    ):
        answered = checkpoint.step
    itr.conclude(records, request, draft.now, answered, step)
    if answered is not None:
        words = f"checkpoint at step {answered} committed"
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


def close_on_success(draft: Draft) -> None:
    """The gang finished while a request was out: every rank exiting 0 wins, nothing was lost."""
    if is_true(draft.conditions, COND_CHECKPOINTING):
        draft.cond(
            COND_CHECKPOINTING,
            False,
            REASON_FINISHED,
            f"attempt {draft.attempt} succeeded before the checkpoint request was answered; "
            "no checkpoint is needed",
        )


def abandon_request(draft: Draft) -> None:
    """A request still out when the gang is torn down for another reason dies with it."""
    if is_true(draft.conditions, COND_CHECKPOINTING):
        draft.cond(
            COND_CHECKPOINTING,
            False,
            REASON_CHECKPOINT_ABANDONED,
            f"attempt {draft.attempt} is being torn down before its checkpoint request was "
            "answered",
        )


def _record(draft: Draft, states: Sequence[RankState]) -> None:
    """One status.interruptions entry per node (or, with no node known, per pod) not there yet."""
    attempt = draft.attempt
    known = {r.node or r.pod for r in draft.records if r.attempt == attempt}
    for s in states:
        key = s.node or s.pod_name
        if key in known:
            continue
        known.add(key)
        draft.records.append(
            Interruption(
                node=s.node,
                pod=None if s.node else s.pod_name,
                source=s.source or "",
                reason=REQUEST_REASON_NODE_LOST,
                detected_at=draft.now_s,
                attempt=attempt,
                # What the gang resumes from; the runtime reports the steps lost past it
                # (interrupt.copy_lost_steps).
                checkpoint_step=_checkpoint_step(draft),
            )
        )


def _request_spec_change(
    draft: Draft, policy: Policy, spec_hash: str, gang: Sequence[PodView]
) -> None:
    """The user edited a field that shapes the pods: ask the gang for a checkpoint, once."""
    if _spec_changed(spec_hash, gang):
        _request_coordinated(
            draft,
            policy,
            SOURCE_SPEC_CHANGE,
            f"attempt {draft.attempt}: a field that shapes the pods was edited (generation "
            f"{draft.job.generation}); asking every pod for a checkpoint, then restarting the "
            "gang with the new spec",
        )


def request_resize(draft: Draft, policy: Policy, why: str) -> None:
    """An elastic gang running short has room for every node again: checkpoint, then grow."""
    _request_coordinated(
        draft,
        policy,
        SOURCE_RESIZE,
        f"attempt {draft.attempt}: {why}; asking every pod for a checkpoint, then restarting "
        f"the gang on {policy.nodes} nodes",
    )


def _request_coordinated(draft: Draft, policy: Policy, source: str, words: str) -> None:
    """Put one operator-initiated request per attempt on the timeline (an Event with `words`)."""
    attempt = draft.attempt
    if any(r.attempt == attempt and r.source == source for r in draft.records):
        return
    added = itr.record(
        draft.records,
        [itr.Signal("", itr.RED, source)],
        job=draft.job.name,
        attempt=attempt,
        now=draft.now,
        default_deadline_seconds=policy.checkpoint_deadline_seconds,
        checkpoint_step=_checkpoint_step(draft),
    )
    if added:
        draft.note(COORDINATED[source][0], words)


def _spec_changed(spec_hash: str, gang: Sequence[PodView]) -> bool:
    """Some pod was built from another spec (pods of an older operator carry no hash: kept)."""
    return bool(spec_hash) and any(p.spec_hash and p.spec_hash != spec_hash for p in gang)


def _checkpoint_step(draft: Draft) -> int | None:
    return draft.status.checkpoint.step if draft.status.checkpoint else None


def _detect(draft: Draft, policy: Policy, gang: Sequence[PodView], observed: Observed) -> None:
    """Put a timeline entry (and an Event) on each node newly announcing that it goes away."""
    records = draft.records
    added = itr.record(
        records,
        itr.detect(gang, observed.nodes),
        job=draft.job.name,
        attempt=draft.attempt,
        now=draft.now,
        default_deadline_seconds=policy.checkpoint_deadline_seconds,
        checkpoint_step=_checkpoint_step(draft),
    )
    for new in added:  # trimmed to the newest entries only in Draft.finish: indexes hold
        sig = new.signal
        if new.deadline_source is None:
            plan = "joins the checkpoint request already out"
        elif sig.level == itr.YELLOW:
            plan = "asking every pod for an opportunistic checkpoint (training continues)"
        else:
            plan = "asking every pod for an emergency checkpoint, then restarting elsewhere"
        deadline = records[new.index].deadline
        source = f", deadline {deadline} from {new.deadline_source}" if new.deadline_source else ""
        draft.note(
            REASON_INTERRUPTION_DETECTED,
            f"attempt {draft.attempt}: node {sig.node} {sig.source} ({sig.reason}); {plan}{source}",
        )


def _settle_yellow(
    draft: Draft,
    request: itr.OpenRequest | None,
    rank0: PodView | None,
    gang: Sequence[PodView],
) -> None:
    """A rebalance request: closed by rank 0's commit with its id, or dropped at its deadline."""
    records = draft.records
    if request is None:
        open_yellow = any(
            r.attempt == draft.attempt and itr.level_of(r) == itr.YELLOW and not r.committed_at
            for r in records
        )
        if open_yellow and is_true(draft.conditions, COND_CHECKPOINTING):
            draft.cond(
                COND_CHECKPOINTING,
                False,
                REASON_CHECKPOINT_DEADLINE_MISSED,
                "no opportunistic checkpoint by the rebalance request's deadline; training goes on",
            )
        return
    commit = rank0.committed if rank0 else None
    if commit is not None and commit.id == request.id:
        itr.conclude(records, request, draft.now, commit.step, None)
        draft.cond(
            COND_CHECKPOINTING,
            False,
            REASON_CHECKPOINT_COMMITTED,
            f"request {request.id}: opportunistic checkpoint at step {commit.step} committed; "
            "training continues",
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
    annotation = {ANNOTATION_CHECKPOINT_REQUEST: request.message().encode()}
    for pod_name in itr.missing_requests(gang, request):
        draft.annotates.append(PodAnnotate(pod_name, annotation))
    draft.wake_at = request.deadline


__all__ = [
    "CARRY_ON",
    "WAIT",
    "Budget",
    "Next",
    "Verdict",
    "abandon_request",
    "assess",
    "close_on_success",
    "request_resize",
    "settle_request",
]
