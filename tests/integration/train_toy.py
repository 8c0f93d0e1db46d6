"""A deterministic toy training run on CPU, one process per rank over gloo (launched by tests).

Every batch is a pure function of (step, rank), threads are pinned to one, so an interrupted and
resumed run must end bitwise equal to an uninterrupted one if the checkpoint is exact.

Env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and the KUBETRAIN_* contract.
Rank 0 writes the number of finished steps to --progress after each step and, at the end,
{"start": <restored step>, "params": <path>} to --result with the final parameters saved.
With --dump DIR every rank also writes its whole state (parameters, optimizer state, the
per-rank entry) right after the restore and at the end: DIR/{restored,final}-rank<r>.pt.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from kubetrain.runtime import Checkpointer, PerRank, ignore_stop_signals  # noqa: E402
from kubetrain.runtime.checkpointer import make_codec  # noqa: E402
from kubetrain.runtime.torch_support import ModelOptimizerState  # noqa: E402


def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1_000_003 * step + rank)
    x = torch.randn(16, 8, generator=gen)
    return x, x.sum(dim=1, keepdim=True).sin()


class Batches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Steps start..stop-1 of this rank's data, so DataLoader workers can serve them."""

    def __init__(self, start: int, stop: int, rank: int) -> None:
        self.start, self.stop, self.rank = start, stop, rank

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return batch(self.start + index, self.rank)


class SlowWrites:
    """A codec whose background writes start `delay` s late: a test can kill one in flight."""

    def __init__(self, codec: str, delay: float) -> None:
        self.inner: Any = make_codec(codec)
        self.name, self.needs_same_world_size = self.inner.name, self.inner.needs_same_world_size
        self.delay = delay

    def save(self, directory: Path, state: Any, rank: int) -> None:
        self.inner.save(directory, state, rank)

    def stage(self, state: Any, rank: int) -> Any:
        return self.inner.stage(state, rank)

    def write(self, directory: Path, staged: Any, rank: int) -> None:
        time.sleep(self.delay)
        self.inner.write(directory, staged, rank)

    def load(self, directory: Path, state: Any, rank: int) -> None:
        self.inner.load(directory, state, rank)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def dump(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, local: Any) -> None:
    """Everything a resume must reproduce, as plain tensors (copies: training goes on)."""
    state = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optim": copy.deepcopy(optimizer.state_dict()),
        "local": None if local is None else local.value.clone(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--codec", default="torch-save")
    parser.add_argument("--every", type=int, default=None)
    parser.add_argument("--step-delay", type=float, default=0.0, help="simulated compute per step")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--write-delay", type=float, default=0.0, help="slow background writes")
    parser.add_argument("--sync-saves", action="store_true", help="no background saves")
    parser.add_argument("--per-rank", action="store_true", help="a PerRank entry in the state")
    parser.add_argument("--plain-per-rank", action="store_true", help="the same, not wrapped")
    parser.add_argument(
        "--per-rank-on-resize", default="refuse", help="restore(per_rank_on_resize=...)"
    )
    parser.add_argument("--dump", type=Path, default=None, help="state after restore and at end")
    parser.add_argument(
        "--exit-report", type=Path, default=None, help="PATH.rank<r>: the group still up at exit?"
    )
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if args.exit_report:  # registered before the checkpointer's own: runs after it, the last
        report = args.exit_report.with_name(f"{args.exit_report.name}.rank{rank}")
        atexit.register(lambda: report.write_text(json.dumps(dist.is_initialized())))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    state: dict[str, object]
    if args.codec == "dcp":
        state = {"app": ModelOptimizerState(model, optimizer)}
    else:
        state = {"model": model, "optim": optimizer}

    # Differs between ranks: rank r holds r * 1000 + the steps it has done.
    local = PerRank(torch.full((4,), float(rank * 1000))) if args.per_rank else None
    if local is not None:
        state["local"] = local
    elif args.plain_per_rank:  # a mistake the DCP codec must point out
        state["local"] = torch.full((4,), float(rank * 1000))

    codec: Any = SlowWrites(args.codec, args.write_delay) if args.write_delay else args.codec
    ckpt = Checkpointer.from_env(
        codec=codec, every_steps=args.every, async_periodic=not args.sync_saves
    )
    start = ckpt.restore(state, per_rank_on_resize=args.per_rank_on_resize)
    if args.dump:
        dump(args.dump / f"restored-rank{rank}.pt", model, optimizer, local)
    loader = torch.utils.data.DataLoader(
        Batches(start, args.steps, rank),
        batch_size=None,
        num_workers=args.workers,
        worker_init_fn=ignore_stop_signals if args.workers else None,
    )
    for step, (x, y) in enumerate(loader, start=start):
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if local is not None:
            local.value += 1
        if rank == 0:
            write_atomic(args.progress, str(step + 1))
        if args.step_delay:
            time.sleep(args.step_delay)
        ckpt.step(step + 1, state)

    ckpt.close()  # collective: commits the last background save while the group is up
    if args.dump:
        dump(args.dump / f"final-rank{rank}.pt", model, optimizer, local)
    if rank == 0:
        params = args.result.with_suffix(".pt")
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, params)
        write_atomic(args.result, json.dumps({"start": start, "params": str(params)}))
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # skip slow interpreter teardown of torch


if __name__ == "__main__":
    main()
