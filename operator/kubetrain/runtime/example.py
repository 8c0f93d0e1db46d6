"""A complete training script using kubetrain's checkpointing, the one the README quotes.

    KUBETRAIN_CHECKPOINT_DIR=/tmp/ckpt python -m kubetrain.runtime.example

Run it, stop it with Ctrl-C or `kill -TERM` (it saves and exits 83), run it again: it continues
from the step it stopped at. Under kubetrain the operator sets KUBETRAIN_* and the spot-notice
agent is started by `Checkpointer.from_env()`. Needs torch.

    EXAMPLE_STEPS         total steps (default 1000)
    EXAMPLE_STEP_SECONDS  time one step takes (default 0.01)
"""

from __future__ import annotations

import os
import signal
import time

import torch


def train_step(model: torch.nn.Module, optim: torch.optim.Optimizer, step: int) -> None:
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(step))
    loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
    loss.backward()
    optim.step()
    optim.zero_grad()
    time.sleep(float(os.environ.get("EXAMPLE_STEP_SECONDS", "0.01")))


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C still interrupts
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 1)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    total_steps = int(os.environ.get("EXAMPLE_STEPS", "1000"))

    # readme:start
    from kubetrain.runtime import Checkpointer

    ckpt = Checkpointer.from_env(
        every_steps=100
    )  # dir, S3 mirror, signals, agent: from KUBETRAIN_*
    state = {"model": model, "optim": optim}
    start = ckpt.restore(state)  # the newest complete checkpoint, loaded in place (0: none yet)
    for step in range(start, total_steps):
        train_step(model, optim, step)
        ckpt.step(step + 1, state)  # periodic saves; on a spot notice all ranks save now, exit 83
    # readme:end

    print(f"trained steps {start}..{total_steps}", flush=True)


if __name__ == "__main__":
    main()
