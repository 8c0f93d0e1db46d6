"""A tiny GPT-2 built from a config (no downloads) trained by the Hugging Face Trainer with
kubetrain checkpoints. Run as a process by tests/integration/test_framework_adapters.py.

    HF_OUT      directory for losses.jsonl and params.txt (the final parameters' digest)
    HF_STOP_AT  send ourselves SIGTERM at the end of this step (a spot notice, a drain)
    HF_STOP_RANK  only this rank gets the SIGTERM (a drain one pod saw); default: every rank
    HF_STEPS    total optimizer steps (default 12)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from kubetrain.integrations.huggingface import train

OUT = Path(os.environ["HF_OUT"])


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int = 64, length: int = 16, vocab: int = 64) -> None:
        self.data = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.data[i], "labels": self.data[i]}


class Record(TrainerCallback):  # type: ignore[misc]
    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs and args.process_index == 0:
            with (OUT / "losses.jsonl").open("a") as f:
                f.write(json.dumps({"step": state.global_step, "loss": logs["loss"]}) + "\n")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        only = os.environ.get("HF_STOP_RANK")
        if state.global_step == int(os.environ.get("HF_STOP_AT", "0")) and (
            only is None or int(only) == args.process_index
        ):
            os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(
        output_dir=str(OUT / "hf-output"),
        max_steps=int(os.environ.get("HF_STEPS", "12")),
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[Record()])
    train(trainer, every_steps=4)
    digest = hashlib.sha256(
        b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    ).hexdigest()
    if trainer.args.process_index == 0:
        (OUT / "params.txt").write_text(digest)
    if torch.distributed.is_initialized():  # PyTorch's advice at the end of main: without it,
        torch.distributed.destroy_process_group()  # gloo's threads can abort the exit (-6)


if __name__ == "__main__":
    main()
