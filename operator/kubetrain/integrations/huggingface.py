"""Hugging Face `Trainer` with kubetrain checkpoints.

    from kubetrain.integrations.huggingface import train
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    train(trainer, every_steps=500)     # restore, periodic saves, save + exit 83 on a notice
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()   # at the end, as PyTorch advises

On an emergency save `train()` destroys the process groups itself and exits 83. A script that
finishes without destroying them can be aborted at exit by gloo's threads (SIGABRT, exit -6: a
failed rank to the operator).

Checkpoints are the Trainer's own (`Trainer._save_checkpoint`: weights, optimizer, scheduler,
scaler, every rank's RNG state, trainer_state.json) written inside kubetrain's commit protocol:
a fresh data directory, then the manifest, on FSx/local disk and mirrored to S3. A resume hands
the committed directory to `trainer.train(resume_from_checkpoint=...)`, which restores all of it
and skips the batches already seen, so training continues exactly where it stopped.

The stop decision is kubetrain's: SIGTERM, SIGUSR1 and the operator's request on the pod only set
a flag; at the end of an optimizer step every rank agrees (all-reduce) on saving at that same
step, saves, and the process exits 83 ("checkpointed and stopped"). Do not also turn on
`TrainingArguments(enable_jit_checkpoint=True)`: its SIGTERM handler replaces kubetrain's, saves
outside the commit protocol and without the ranks agreeing on a step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kubetrain.runtime import Checkpointer

log = logging.getLogger(__name__)

TRAINER = "trainer"  # the key the codec finds the Trainer under
RESUME = "resume_from_checkpoint"  # where the codec puts the directory to resume from


class TrainerCodec:
    """Saves through the Trainer's own checkpointing, into the data directory kubetrain gives.

    Every rank calls it (as the Trainer's save path expects, e.g. for sharded optimizers); the
    Trainer decides which rank writes which file.
    """

    name = "hf-trainer"
    needs_same_world_size = False  # the Trainer handles a different world size on resume

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        trainer: Trainer = state[TRAINER]
        if trainer.model is None:
            raise ValueError("the Trainer has no model to checkpoint")
        previous = trainer.args.output_dir
        trainer.args.output_dir = str(directory)
        try:
            trainer._save_checkpoint(trainer.model, trial=None)
        finally:
            trainer.args.output_dir = previous

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        found = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if not found:
            raise FileNotFoundError(f"no Trainer checkpoint in {directory}")
        state[RESUME] = str(found[-1])


class KubetrainCallback(TrainerCallback):
    """Periodic and requested saves at optimizer-step boundaries; stops training after an
    emergency save (`stopped` tells the caller to exit 83). Use `train()` unless you call
    `trainer.train()` yourself; then pass `resume_from_checkpoint=callback.restore()`."""

    def __init__(
        self,
        trainer: Trainer,
        checkpointer: Checkpointer | None = None,
        *,
        every_steps: int | None = None,
    ) -> None:
        if getattr(trainer.args, "enable_jit_checkpoint", False):
            raise ValueError(
                "TrainingArguments(enable_jit_checkpoint=True) replaces kubetrain's SIGTERM "
                "handling: turn it off, kubetrain saves on SIGTERM and on the operator's request"
            )
        self.trainer = trainer
        self.checkpointer = checkpointer or Checkpointer.from_env(
            every_steps=every_steps, codec=TrainerCodec(), exit_on_emergency=False
        )
        if not isinstance(self.checkpointer.codec, TrainerCodec):
            raise ValueError("the Checkpointer for a Trainer must use codec=TrainerCodec()")
        self.checkpointer.exit_on_emergency = False  # the Trainer stops; train() exits 83
        self.stopped = False
        trainer.add_callback(self)

    def restore(self) -> str | None:
        """The committed Trainer checkpoint to resume from (None: start fresh)."""
        state: dict[str, Any] = {TRAINER: self.trainer}
        step = self.checkpointer.restore(state)
        resume = state.get(RESUME)
        if step:
            log.info("resuming the Trainer from step %d (%s)", step, resume)
        return str(resume) if resume else None

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> TrainerControl:
        if self.checkpointer.step(state.global_step, {TRAINER: self.trainer}):
            self.stopped = True
            control.should_training_stop = True
            control.should_save = False  # the Trainer's own save would be a second copy
        return control


def train(
    trainer: Trainer,
    checkpointer: Checkpointer | None = None,
    *,
    every_steps: int | None = None,
    **train_kwargs: Any,
) -> Any:
    """`trainer.train()` resumed from the newest committed checkpoint, saving as configured;
    raises SystemExit(83) after an emergency save (a spot notice, SIGTERM, a request)."""
    callback = KubetrainCallback(trainer, checkpointer, every_steps=every_steps)
    output = trainer.train(resume_from_checkpoint=callback.restore(), **train_kwargs)
    if callback.stopped:
        callback.checkpointer.exit_checkpointed()
    return output
