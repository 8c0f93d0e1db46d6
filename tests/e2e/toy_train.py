"""A deterministic data-parallel training run, one process per pod, for end-to-end spot drills.

Run by tests/e2e/local_kubelet.py with the pod's environment. Uses kubetrain.runtime exactly as a
user's script would; writes `results/<pod>.json` (final step and a hash of the parameters) when it
finishes, and `progress/<pod>` (the last completed step) as it goes.

    TOY_STEPS          total steps (default 200)
    TOY_STEP_SECONDS   time one step takes (default 0.05)
    TOY_EVERY          periodic checkpoint interval in steps (default 20)
    TOY_HANG_AT_STEP   every rank stops making progress after this step (a stuck input pipeline
                       or collective), in the attempt TOY_HANG_ATTEMPT (default 1) only
    TOY_CODEC          the checkpoint codec (default auto: torch.save; dcp reshards when an
                       elastic gang resumes on another number of nodes)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from kubetrain.runtime import Checkpointer


def main() -> None:
    rank = int(os.environ.get("NODE_RANK", os.environ.get("RANK", "0")))
    world = int(os.environ.get("NNODES", os.environ.get("WORLD_SIZE", "1")))
    pod = os.environ.get("KUBETRAIN_POD_NAME", f"rank{rank}")
    steps = int(os.environ.get("TOY_STEPS", "200"))
    step_seconds = float(os.environ.get("TOY_STEP_SECONDS", "0.05"))
    every = int(os.environ.get("TOY_EVERY", "20"))
    hang_at = -1
    if os.environ.get("KUBETRAIN_ATTEMPT") == os.environ.get("TOY_HANG_ATTEMPT", "1"):
        hang_at = int(os.environ.get("TOY_HANG_AT_STEP", "-1"))
    out = Path.cwd()

    addr, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{addr}:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    state = {"model": model, "optim": optim}

    ckpt = Checkpointer.from_env(every_steps=every, codec=os.environ.get("TOY_CODEC", "auto"))
    start = ckpt.restore(state)
    progress = out / "progress"
    progress.mkdir(exist_ok=True)
    for step in range(start, steps):
        while step == hang_at:
            time.sleep(1)  # hung: no step, no heartbeat (SIGTERM only sets the runtime's flag)
        gen = torch.Generator().manual_seed(step * 1000 + rank)
        x = torch.randn(16, 8, generator=gen)
        loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
        loss.backward()
        for p in model.parameters():
            assert p.grad is not None
            dist.all_reduce(p.grad)
            p.grad /= world
        optim.step()
        optim.zero_grad()
        dist.barrier()
        tmp = progress / f".{pod}.tmp"  # atomic: a kill mid-write never leaves an empty file
        tmp.write_text(str(step + 1))
        tmp.replace(progress / pod)
        if step_seconds:
            time.sleep(step_seconds)
        ckpt.step(step + 1, state)  # periodic save; on a notice: save this step and exit 83

    # repr() of a float round-trips exactly, so equal digests mean bitwise-equal parameters.
    digest = hashlib.sha256(repr([p.tolist() for p in model.parameters()]).encode()).hexdigest()
    results = out / "results"
    results.mkdir(exist_ok=True)
    (results / f"{pod}.json").write_text(
        json.dumps({"step": steps, "params": digest, "started_at_step": start})
    )
    ckpt.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
