"""PyTorch Lightning with kubetrain checkpoints.

    from kubetrain.integrations.lightning import fit
    trainer = L.Trainer(max_steps=10_000, ...)
    fit(trainer, model, datamodule=dm, every_steps=500)   # restore, periodic saves, exit 83

Checkpoints are Lightning's own (`Trainer.save_checkpoint`: weights, optimizers, schedulers,
loop progress, callbacks' state) written inside kubetrain's commit protocol: a fresh data
directory, then the manifest, on FSx/local disk and mirrored to S3. A resume passes the committed
file to `trainer.fit(ckpt_path=...)`.

The stop decision is kubetrain's: SIGTERM, SIGUSR1 and the operator's request on the pod set a
flag; after an optimizer step every rank agrees (all-reduce) on saving at that same step, saves,
and the process exits 83 ("checkpointed and stopped"). Lightning's own SIGTERM handler (which
ends `fit` with SIGTERMException after the current batch, without a checkpoint) is replaced by
kubetrain's when training starts; Lightning puts its predecessors back when `fit` ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # the standalone `pytorch-lightning` distribution
    import pytorch_lightning as pl

from kubetrain.runtime import Checkpointer, install_signal_handlers

log = logging.getLogger(__name__)

TRAINER = "trainer"
RESUME = "ckpt_path"
FILE = "lightning.ckpt"


class LightningCodec:
    """`Trainer.save_checkpoint` into kubetrain's data directory (every rank calls it; the
    strategy decides who writes, and sharded strategies write their shards)."""

    name = "lightning"
    needs_same_world_size = False

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        trainer: pl.Trainer = state[TRAINER]
        trainer.save_checkpoint(str(directory / FILE))

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        state[RESUME] = str(directory / FILE)


class KubetrainCallback(pl.Callback):  # type: ignore[misc]
    def __init__(
        self, checkpointer: Checkpointer | None = None, *, every_steps: int | None = None
    ) -> None:
        self.checkpointer = checkpointer or Checkpointer.from_env(
            every_steps=every_steps, codec=LightningCodec(), exit_on_emergency=False
        )
        if not isinstance(self.checkpointer.codec, LightningCodec):
            raise ValueError("the Checkpointer for Lightning must use codec=LightningCodec()")
        self.checkpointer.exit_on_emergency = False  # Lightning stops; fit() exits 83
        self.stopped = False

    def restore(self, trainer: pl.Trainer) -> str | None:
        """The committed checkpoint file to pass as `ckpt_path` (None: start fresh)."""
        state: dict[str, Any] = {TRAINER: trainer}
        step = self.checkpointer.restore(state)
        if step:
            log.info("resuming Lightning from step %d (%s)", step, state.get(RESUME))
        resume = state.get(RESUME)
        return str(resume) if resume else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            install_signal_handlers(self.checkpointer.flag)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self.checkpointer.step(trainer.global_step, {TRAINER: trainer}):
            self.stopped = True
            trainer.should_stop = True


def fit(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    *args: Any,
    checkpointer: Checkpointer | None = None,
    every_steps: int | None = None,
    **fit_kwargs: Any,
) -> None:
    """`trainer.fit()` resumed from the newest committed checkpoint; raises SystemExit(83) after
    an emergency save (a spot notice, SIGTERM, a request)."""
    callback = KubetrainCallback(checkpointer, every_steps=every_steps)
    trainer.callbacks.append(callback)
    try:
        trainer.fit(model, *args, ckpt_path=callback.restore(trainer), **fit_kwargs)
    except BaseException:
        if not callback.stopped:
            raise
    if callback.stopped:
        callback.checkpointer.exit_checkpointed()
