"""`Checkpointer`: the five-line integration a training script uses.

    ckpt = Checkpointer.from_env(every_steps=500)
    state = {"model": model, "optim": optimizer}
    start = ckpt.restore(state)
    for step in range(start, total_steps):
        train_step(...); ckpt.step(step + 1, state)

Every rank calls `step()` after every optimizer step. It all-reduces the stop flag so all ranks
decide the same thing at the same step, saves periodically or on a notice, and after an emergency
save exits with code 83 ("checkpointed and stopped"), which the operator counts as an interruption.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping
from concurrent.futures import Future, wait
from typing import Any, Literal, NoReturn

from kubetrain.api.constants import (
    DEFAULT_PROGRESS_SECONDS,
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_KEEP,
    ENV_CHECKPOINT_S3_URI,
    ENV_JOB,
    ENV_POD_NAME,
    ENV_POD_NAMESPACE,
    ENV_PROGRESS_SECONDS,
    ENV_RESUME_MANIFEST,
    EXIT_CHECKPOINTED_AND_STOPPED,
)
from kubetrain.runtime.agent import CheckpointAgent
from kubetrain.runtime.async_save import DONE, FAILED, RUNNING, InFlight, StagedCodec, in_background
from kubetrain.runtime.collective import (
    Codec,
    Collective,
    PerRank,
    PickleCodec,
    SingleProcess,
    env_int,
)
from kubetrain.runtime.manifest import (
    FileEntry,
    Kind,
    Manifest,
    ManifestError,
    new_checkpoint_id,
    parse_name,
)
from kubetrain.runtime.posix import PosixTier, fsync_tree
from kubetrain.runtime.s3 import S3Mirror, S3Tier
from kubetrain.runtime.signals import StopFlag, StopLevel, install_signal_handlers, seconds_left
from kubetrain.runtime.store import (
    Tier,
    collect_garbage,
    commit,
    discover,
    load_complete,
)

log = logging.getLogger(__name__)


def _torch_in_use() -> bool:
    """Only look at torch if the script imported it: the core must not pull it in."""
    return "torch" in sys.modules


def make_codec(codec: str | Codec) -> Codec:
    if not isinstance(codec, str):
        return codec
    if codec == "auto":
        codec = "torch-save" if _torch_in_use() else "pickle"
    if codec == "pickle":
        return PickleCodec()
    if codec in ("torch-save", "dcp"):
        from kubetrain.runtime.torch_support import DCPCodec, TorchSaveCodec

        return TorchSaveCodec() if codec == "torch-save" else DCPCodec()
    raise ValueError(f"codec={codec!r}: use 'auto', 'torch-save', 'dcp' or 'pickle'")


class Checkpointer:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        job: str = "",
        attempt: int = 0,
        s3_uri: str | None = None,
        keep: int = 3,
        every_steps: int | None = None,
        every_seconds: float | None = None,
        codec: str | Codec = "auto",
        collective: Collective | None = None,
        resume_manifest: str | None = None,
        flag: StopFlag | None = None,
        agent: CheckpointAgent | None = None,
        exit_on_emergency: bool = True,
        mirror_wait_on_exit: float = 60.0,
        s3_client: Any = None,
        async_periodic: bool = True,
        async_wait_seconds: float = 600.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: keep at least 1 checkpoint (spec.checkpoint.keep)")
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps={every_steps}: use a positive step count or None")
        self.local = PosixTier(directory)
        self.remote = S3Tier(s3_uri, s3_client) if s3_uri else None
        self.mirror = S3Mirror(self.local, self.remote, keep) if self.remote else None
        self.job, self.attempt, self.keep = job, attempt, keep
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.codec = make_codec(codec)
        self._collective = collective
        self.resume_manifest = resume_manifest
        self.flag = flag or StopFlag()
        self.agent = agent
        self.exit_on_emergency = exit_on_emergency
        self.mirror_wait_on_exit = mirror_wait_on_exit
        self.last: Manifest | None = None  # newest checkpoint restored or committed by this run
        self.last_save_seconds: float | None = None  # start of the save to its commit
        self.last_stall_seconds: float | None = None  # how long the training thread was held
        # Training time spent in saves by this process (goodput): for a background save, the
        # stall only.
        self.saving_seconds = 0.0
        self._last_save_time = time.monotonic()
        # Background periodic saves (async_save.py): for codecs that can stage, at most one.
        self.async_periodic = async_periodic and isinstance(self.codec, StagedCodec)
        self.async_wait_seconds = async_wait_seconds  # bound on waiting for an in-flight save
        self.inflight: InFlight | None = None
        self._abandoned: InFlight | None = None  # gave up waiting; its thread may still write
        self._gc: Future[None] | None = None  # the collection after the last background commit

    @classmethod
    def from_env(
        cls,
        *,
        install_signals: bool = True,
        start_agent: bool = True,
        **kwargs: Any,
    ) -> Checkpointer:
        """Everything from the KUBETRAIN_* contract the operator sets; keyword args override."""
        env = os.environ
        directory = kwargs.pop("directory", None) or env.get(ENV_CHECKPOINT_DIR)
        if not directory:
            raise ValueError(
                f"{ENV_CHECKPOINT_DIR} is not set: set spec.checkpoint.dir on the TrainingJob "
                "(or export it when running outside kubetrain)"
            )
        kwargs.setdefault("job", env.get(ENV_JOB, ""))
        kwargs.setdefault("attempt", env_int(ENV_ATTEMPT, 0))
        kwargs.setdefault("s3_uri", env.get(ENV_CHECKPOINT_S3_URI) or None)
        kwargs.setdefault("keep", env_int(ENV_CHECKPOINT_KEEP, 3))
        kwargs.setdefault("resume_manifest", env.get(ENV_RESUME_MANIFEST) or None)
        flag = kwargs.pop("flag", None) or StopFlag()
        if install_signals:
            install_signal_handlers(flag)
        agent = kwargs.pop("agent", None)
        pod, namespace = env.get(ENV_POD_NAME), env.get(ENV_POD_NAMESPACE)
        if agent is None and start_agent and pod and namespace and env_int("LOCAL_RANK", 0) == 0:
            agent = start_pod_agent(pod, namespace, flag)
        ckpt = cls(directory, flag=flag, agent=agent, **kwargs)
        atexit.register(ckpt.close)  # the last periodic save reaches S3 before a normal exit
        return ckpt

    # --- collectives, resolved on first use so from_env() may run before init_process_group ----
    @property
    def collective(self) -> Collective:
        if self._collective is None:
            self._collective = SingleProcess()
            if _torch_in_use():
                from kubetrain.runtime.torch_support import TorchCollective, distributed_ready

                if distributed_ready():
                    self._collective = TorchCollective()
        return self._collective

    @property
    def rank(self) -> int:
        return self.collective.rank

    def should_checkpoint(self) -> bool:
        """This process's own view (signals, agent); `step()` agrees on it across ranks."""
        return self.flag.level > StopLevel.NONE

    # --- restore -------------------------------------------------------------------------------
    def restore(
        self,
        state: MutableMapping[str, Any],
        per_rank_on_resize: Literal["refuse", "keep"] = "refuse",
    ) -> int:
        """Load the newest complete checkpoint into `state` in place; return its step (0 if none).

        A checkpoint written by another world size loads where the codec reshards (DCP); its
        `PerRank` entries cannot be, and are refused, or with `per_rank_on_resize="keep"` left
        as they are (e.g. RNG states seeded for the new rank)."""
        coll = self.collective
        previous = self._read_progress() if coll.rank == 0 else None
        chosen = self._choose_and_fetch() if coll.rank == 0 else None
        name = coll.broadcast_str(chosen.name if chosen else "")
        if not name:
            log.info("no complete checkpoint under %s: starting from scratch", self.local.uri())
            if coll.rank == 0 and previous:
                self._report_resumed(0, previous, None)
            return 0
        manifest = load_complete(self.local, name)
        if self.codec.needs_same_world_size and manifest.world_size != coll.world_size:
            raise ManifestError(
                f"checkpoint {name} was written by {manifest.world_size} ranks with codec "
                f"{manifest.codec!r}, this run has {coll.world_size}: keep the same nodes x "
                "perNode, or save with codec='dcp' which reshards on load"
            )
        if manifest.codec != self.codec.name:
            raise ManifestError(
                f"checkpoint {name} was written with codec {manifest.codec!r}, this run uses "
                f"{self.codec.name!r}: pass codec={manifest.codec!r} to the Checkpointer"
            )
        per_rank = sorted(k for k, v in state.items() if isinstance(v, PerRank))
        resized = manifest.world_size != coll.world_size
        if resized and per_rank and per_rank_on_resize != "keep":
            raise ManifestError(
                f"checkpoint {name} was written by {manifest.world_size} ranks, this run has "
                f"{coll.world_size}, and the state entries {per_rank} hold one value per rank "
                "(PerRank), which no codec can reshard: keep the same nodes x perNode, or call "
                "restore(state, per_rank_on_resize='keep') to leave them as they are"
            )
        loadable = state
        if resized and per_rank:  # "keep": load everything else, leave these untouched
            loadable = {k: v for k, v in state.items() if k not in per_rank}
        self.codec.load(self.local.local_path(manifest.data_dir), loadable, coll.rank)
        if loadable is not state:
            state.update(loadable)
        self.last = manifest
        log.info(
            "restored %s (step %d, written by %d ranks, restored into %d)",
            self.local.uri(manifest.path),
            manifest.step,
            manifest.world_size,
            coll.world_size,
        )
        if coll.rank == 0 and previous is not None:
            self._report_resumed(manifest.step, previous, manifest)
        return manifest.step

    # --- progress: how far a run got, so a resumed run can tell what was lost ----------------
    PROGRESS_FILE = "progress.json"

    def _read_progress(self) -> int | None:
        try:
            raw = json.loads(self.local.local_path(self.PROGRESS_FILE).read_text())
            return int(raw["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_progress(self, step: int) -> None:
        """Rank 0 records the steps done, every step: advisory, so an atomic replace without
        fsync (a crash may lose the last value, making the lost-step count a lower bound)."""
        path = self.local.local_path(self.PROGRESS_FILE)
        tmp = path.with_name(f".{self.PROGRESS_FILE}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"step": step, "attempt": self.attempt}))
            os.replace(tmp, path)
        except OSError as exc:  # never let bookkeeping stop training
            log.debug("recording progress: %s", exc)

    def _report_resumed(self, step: int, previous: int, manifest: Manifest | None) -> None:
        log.info("resumed at step %d; the previous run had reached step %d", step, previous)
        if self.agent is None:
            return
        try:
            self.agent.report_resumed(
                step=step,
                previous_step=previous,
                manifest=self.local.uri(manifest.path) if manifest else "",
                saved_world_size=manifest.world_size if manifest else None,
                world_size=self.collective.world_size,
            )
        except Exception as exc:  # reporting is best effort
            log.warning("reporting the resume on the pod failed: %s", exc)

    def _choose_and_fetch(self) -> Manifest | None:
        """Rank 0: the resume hint if valid and not older than discovery, else the newest found.

        Equal steps prefer the local tier; a checkpoint found only on S3 is downloaded first.
        """
        tiers: list[Tier] = [self.local] + ([self.remote] if self.remote else [])
        best: tuple[Manifest, Tier] | None = None
        for tier in tiers:
            found = discover(tier)
            if found and (best is None or found.step > best[0].step):
                best = (found, tier)
        hinted = self._hinted(tiers)
        if hinted and (best is None or hinted[0].step >= best[0].step):
            best = hinted
        if best is None:
            return None
        manifest, tier = best
        if tier is not self.local and isinstance(tier, S3Tier):
            log.info("fetching %s from %s", manifest.name, tier.uri())
            tier.download_tree(manifest.data_dir, self.local)
            try:
                commit(self.local, manifest)
            except Exception as exc:  # already there from an earlier fetch: revalidated below
                log.info("local manifest for %s: %s", manifest.name, exc)
        return load_complete(self.local, manifest.name)

    def _hinted(self, tiers: list[Tier]) -> tuple[Manifest, Tier] | None:
        if not self.resume_manifest:
            return None
        base = self.resume_manifest.rstrip("/").rsplit("/", 1)[-1]
        if parse_name(base) is None:
            log.warning("resume hint %r is not a checkpoint manifest name", self.resume_manifest)
            return None
        for tier in tiers:
            try:
                return load_complete(tier, base.removesuffix(".json")), tier
            except ManifestError as exc:
                log.warning("resume hint %s on %s: %s", base, tier.uri(), exc)
        return None

    # --- the per-step hook ---------------------------------------------------------------------
    def step(self, step: int, state: Mapping[str, Any]) -> bool:
        """Call on every rank after every optimizer step with the number of steps done.

        Saves when `every_steps`/`every_seconds` says so or on a request; after an emergency save
        it raises SystemExit(83), or returns True (stop now) when exit_on_emergency=False.
        """
        coll = self.collective
        if coll.rank == 0:
            self._write_progress(step)
            if self.agent is not None:
                self.agent.report_progress(step, self.saving_seconds)
        if self.inflight is not None:
            self._settle(wait=0.0)  # commit a finished background save; never blocks
        local = self.flag.level
        if (
            self.every_seconds is not None
            and coll.rank == 0
            and time.monotonic() - self._last_save_time >= self.every_seconds
        ):
            local = max(local, StopLevel.SAVE)  # rank 0's clock decides; the all-reduce spreads it
        agreed = StopLevel(coll.max_int(int(local))) if coll.world_size > 1 else local
        periodic = self.every_steps is not None and step % self.every_steps == 0
        if agreed >= StopLevel.SAVE_AND_EXIT:
            if self.inflight is not None:
                request = self.flag.peek()
                left = seconds_left(request.deadline if request else None)
                budget = self.async_wait_seconds if left is None else min(left / 2, 60.0)
                self._settle(wait=min(budget, self.async_wait_seconds), give_up=True)
            self.save(step, state, kind="emergency")
            if self.exit_on_emergency:
                self.exit_checkpointed()
            return True
        if agreed == StopLevel.SAVE or periodic:
            if self.inflight is not None:  # one at a time: the due save waits for the last one
                self._settle(wait=self.async_wait_seconds, give_up=True)
            if self._background_free():
                self.save_async(step, state)
            else:
                self.save(step, state, kind="periodic")
            self.flag.clear_save()
        return False

    def save(self, step: int, state: Mapping[str, Any], kind: Kind = "periodic") -> Manifest:
        """Collective: every rank writes its files, then rank 0 commits and reports."""
        coll = self.collective
        request = self.flag.peek()
        if self.inflight is not None:  # never two saves at once; an emergency waits in step()
            self._settle(wait=self.async_wait_seconds, give_up=True)
        if self.last is not None and self.last.step == step:
            manifest = self.last  # nothing new since the last commit: report it, write nothing
            if coll.rank == 0:
                self._report(manifest, kind, request.request_id if request else None)
            coll.barrier()
            return manifest
        started = time.monotonic()
        manifest = self._new_checkpoint(step, kind)
        self.codec.save(self.local.local_path(manifest.data_dir), state, coll.rank)
        coll.barrier()
        if coll.rank == 0:
            manifest = self._commit(manifest, request.request_id if request else None)
        if kind == "emergency":
            coll.barrier()  # nobody exits before the commit: a launcher may kill the rest
        self.last = manifest
        self.last_save_seconds = self.last_stall_seconds = time.monotonic() - started
        self.saving_seconds += self.last_save_seconds
        self._last_save_time = time.monotonic()
        if request is not None and request.deadline is not None:
            left = seconds_left(request.deadline)
            if left is not None and left < 0:
                log.warning(
                    "checkpoint %s committed %.1fs after the notice's deadline",
                    manifest.name,
                    -left,
                )
        return manifest

    def _new_checkpoint(self, step: int, kind: Kind) -> Manifest:
        """Collective: agree on a fresh id, create the data directory; files come at commit."""
        coll = self.collective
        ckpt_id = coll.broadcast_str(new_checkpoint_id() if coll.rank == 0 else None)
        manifest = Manifest(
            job=self.job,
            attempt=self.attempt,
            step=step,
            kind=kind,
            world_size=coll.world_size,
            files=(),  # rank 0 fills them in; other ranks only need name and step
            id=ckpt_id,
            codec=self.codec.name,
            writer=f"{socket.gethostname()}/{os.getpid()}",
            parent=self.last.name if self.last else None,
        )
        if coll.rank == 0:
            self.local.make_data_dir(manifest.data_dir)
        coll.barrier()
        return manifest

    def _commit(
        self, manifest: Manifest, request_id: str | None, background_gc: bool = False
    ) -> Manifest:
        """Rank 0, once every rank's files are durable: manifest last, then mirror, report, GC
        (in a daemon thread after a background save: deleting old data is no reason to stall;
        it only touches checkpoints older than this one, never a save in flight)."""
        data_dir = manifest.data_dir
        fsync_tree(self.local.local_path(data_dir))
        sizes = self.local.sizes_under(data_dir)
        files = tuple(FileEntry(p, s) for p, s in sorted(sizes.items()))
        manifest = dataclasses.replace(manifest, files=files)
        commit(self.local, manifest)
        if self.mirror:
            self.mirror.submit(manifest)
        self._report(manifest, manifest.kind, request_id)
        if manifest.kind == "periodic" and background_gc:
            self._gc = in_background(lambda: self._collect_garbage(), "kubetrain-gc")
        elif manifest.kind == "periodic":  # an emergency save spends no time on GC; next run does
            self._collect_garbage()
        return manifest

    def _collect_garbage(self) -> None:
        try:
            collect_garbage(self.local, self.keep)
        except OSError as exc:  # a concurrent collection got there first; the next one retries
            log.info("checkpoint garbage collection: %s", exc)

    # --- background periodic saves (see async_save.py for the rules) --------------------------
    def save_async(self, step: int, state: Mapping[str, Any]) -> None:
        """Collective: stage a copy on every rank and write it in the background; the commit
        happens at a later `step()` (or `flush()`/`close()`) once every rank has finished."""
        if not isinstance(self.codec, StagedCodec):
            raise TypeError(f"codec {self.codec.name!r} cannot stage; use save()")
        if self.inflight is not None:
            self._settle(wait=self.async_wait_seconds, give_up=True)
        if self.last is not None and self.last.step == step:
            return
        coll, codec = self.collective, self.codec
        request = self.flag.peek()
        started = time.monotonic()
        manifest = self._new_checkpoint(step, "periodic")
        staged = codec.stage(state, coll.rank)
        directory = self.local.local_path(manifest.data_dir)
        future = in_background(
            lambda: codec.write(directory, staged, coll.rank), f"kubetrain-save-{step}"
        )
        stall = time.monotonic() - started
        self.inflight = InFlight(
            manifest, future, started, stall, request.request_id if request else None
        )
        self.last_stall_seconds = stall
        self.saving_seconds += stall
        self._last_save_time = time.monotonic()

    def flush(self, timeout: float | None = None) -> Manifest | None:
        """Collective: wait (bounded) for the in-flight save and commit it; the newest commit."""
        if self.inflight is not None:
            self._settle(wait=self.async_wait_seconds if timeout is None else timeout)
        if self._gc is not None:  # so that what is on disk afterwards is the kept set
            wait([self._gc], timeout=self.async_wait_seconds if timeout is None else timeout)
        return self.last

    def _settle(self, wait: float, give_up: bool = False) -> None:
        """Collective: commit the in-flight save if every rank's write is done (waiting up to
        `wait` s for this rank's); drop it if one failed, or, with `give_up`, is still running."""
        pending = self.inflight
        assert pending is not None
        entered = time.monotonic()
        try:
            self._settle_pending(pending, wait, give_up)
        finally:  # waiting for, and committing, a background save holds the training thread
            self.saving_seconds += time.monotonic() - entered

    def _settle_pending(self, pending: InFlight, wait: float, give_up: bool) -> None:
        coll = self.collective
        mine = pending.wait(wait) if wait > 0 else pending.state()
        agreed = coll.max_int(mine) if coll.world_size > 1 else mine
        if agreed == RUNNING and not give_up:
            return
        self.inflight = None
        if agreed == DONE:
            manifest = pending.manifest
            if coll.rank == 0:
                manifest = self._commit(manifest, pending.request_id, background_gc=True)
            self.last = manifest
            self.last_save_seconds = time.monotonic() - pending.started
            return
        if agreed == RUNNING:
            self._abandoned = pending
        error = pending.future.exception() if pending.future.done() else None
        log.warning(
            "background checkpoint %s not committed (%s); the previous checkpoint stands",
            pending.manifest.name,
            f"failed: {error}" if error else "a rank failed" if agreed == FAILED else "too slow",
        )

    def _background_free(self) -> bool:
        """Collective: may a save run in the background now (no abandoned write still going)?"""
        if not self.async_periodic:
            return False
        if self._abandoned is None:
            return True
        coll = self.collective
        busy = int(not self._abandoned.future.done())
        if (coll.max_int(busy) if coll.world_size > 1 else busy) == 0:
            self._abandoned = None
        return self._abandoned is None

    def _report(self, manifest: Manifest, kind: Kind, request_id: str | None) -> None:
        if self.agent is None:
            return
        try:
            self.agent.report_committed(
                step=manifest.step,
                manifest=self.local.uri(manifest.path),
                kind=kind,
                checkpoint_id=manifest.id,
                request_id=request_id,
            )
        except Exception as exc:  # the manifest is the truth; a lost report must not stop training
            log.warning("reporting checkpoint %s on the pod failed: %s", manifest.name, exc)

    def exit_checkpointed(self) -> NoReturn:
        """After an emergency save, on every rank: close, release the process groups, exit 83.

        The ranks have just agreed on the save and passed its commit barrier, so each destroys
        its process groups here (the training's and the checkpointer's own gloo group), while the
        interpreter is whole. Left to the interpreter's finalization, gloo's threads can abort
        the process (SIGABRT, "terminate called without an active exception", pytorch#179291):
        rank 0 of the two-rank Hugging Face test exited -6 once in CI right after an emergency
        save, and once in 24 local runs at the end of a run. The operator counts such a rank as
        failed, not as checkpointed and stopped."""
        self.close()
        if _torch_in_use():
            from kubetrain.runtime.torch_support import release_process_groups

            release_process_groups()
        raise SystemExit(EXIT_CHECKPOINTED_AND_STOPPED)

    def close(self) -> None:
        """Stop the agent and give the S3 mirror a bounded time (and the notice's deadline) to
        finish; the local tier already holds every committed checkpoint. Runs at exit too."""
        if self.inflight is not None:
            if self._can_agree():
                self.flush(self.async_wait_seconds)
            else:
                log.warning(
                    "background checkpoint %s not committed: the process group is gone; call "
                    "ckpt.close() before destroy_process_group()",
                    self.inflight.manifest.name,
                )
        if self.agent:
            self.agent.close()
        if self.mirror and self._collective is not None and self.rank == 0:
            request = self.flag.peek()
            left = seconds_left(request.deadline if request else None)
            wait = self.mirror_wait_on_exit
            budget = wait if left is None else min(wait, left)
            if budget > 0 and not self.mirror.flush(budget):
                log.warning("S3 mirror still uploading at exit; the local tier has the checkpoint")

    def _can_agree(self) -> bool:
        if self.collective.world_size == 1 or not _torch_in_use():
            return True
        from kubetrain.runtime.torch_support import distributed_ready

        return distributed_ready()


def start_pod_agent(pod: str, namespace: str, flag: StopFlag) -> CheckpointAgent | None:
    try:
        from kubetrain.runtime.podapi import PodAPI

        seconds = float(os.environ.get(ENV_PROGRESS_SECONDS) or DEFAULT_PROGRESS_SECONDS)
        agent = CheckpointAgent(PodAPI(pod, namespace), flag, progress_seconds=seconds)
    except Exception as exc:  # no client library, no credentials: signals still work
        log.warning("checkpoint agent disabled (%s); SIGTERM still triggers checkpoints", exc)
        return None
    agent.start()
    return agent
