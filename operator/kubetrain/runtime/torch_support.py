"""PyTorch integration: gloo collectives for the stop flag, `torch.save` and DCP codecs.

Imported only when the training script uses torch (the checkpointer picks it when `torch` is
already in `sys.modules`), so the core keeps working in torch-free containers.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kubetrain.runtime.collective import PerRank, load_value, rank_file, restore_into, snapshot
from kubetrain.runtime.posix import fsync_dir

BROADCAST_BYTES = 255  # checkpoint names are ~30 bytes
# DCP's FileSystemWriter threads per rank (its default is 1); see hack/bench/checkpoint_throughput.py.
DCP_WRITER_THREADS = 2


class TorchCollective:
    """Collectives on a gloo group: cheap on CPU, and independent of the NCCL training traffic.

    With an NCCL default group a dedicated gloo group is created once, on first use, by every
    rank at the same step (the checkpointer's first call), as `new_group` requires.
    """

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.group: Any = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def max_int(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return int(tensor.item())

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def broadcast_str(self, value: str | None) -> str:
        """Via a fixed-size byte tensor: no pickling, and no numpy (broadcast_object_list needs it)."""
        buf = torch.zeros(BROADCAST_BYTES + 1, dtype=torch.uint8)
        if self.rank == 0:
            if value is None:
                raise ValueError("rank 0 must provide the value to broadcast")
            data = value.encode()
            if len(data) > BROADCAST_BYTES:
                raise ValueError(f"{value!r} is longer than {BROADCAST_BYTES} bytes")
            buf[0] = len(data)
            buf[1 : len(data) + 1] = torch.tensor(list(data), dtype=torch.uint8)
        dist.broadcast(buf, src=0, group=self.group)
        size = int(buf[0].item())
        return bytes(buf[1 : size + 1].tolist()).decode()


def host_copy(value: Any) -> Any:
    """A private copy: tensors copied to CPU memory, containers rebuilt, other leaves shared
    (numbers, strings: immutable in state dicts)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copied = copy.copy(value)  # keeps OrderedDict, defaultdict and their attributes
        for key, item in value.items():
            copied[key] = host_copy(item)
        return copied
    if type(value) in (list, tuple):
        return type(value)(host_copy(v) for v in value)
    return value


_crc_lock = threading.Lock()
_crc_writers = 0
_crc_before = True


@contextlib.contextmanager
def zip_crc32(enabled: bool) -> Iterator[None]:
    """`torch.save`'s CRC32 of every record: off while this block writes, unless `enabled`
    (which leaves the process's setting alone).

    torch.load never checks those CRCs (its zip reader is built without CRC checks: a flipped
    byte loads silently), yet computing them is a third of a DCP save's time on a fast disk
    (hack/bench/checkpoint_throughput.py). Integrity here comes from fsync before the manifest
    commit and the sizes the manifest lists, not from the CRC. The setting is process-wide:
    while a kubetrain save runs, the user's own `torch.save` calls also write CRC fields of 0,
    which every torch.load accepts. Counted, so overlapping saves (a background write and an
    emergency save) restore the user's setting only when the last one ends.
    """
    global _crc_writers, _crc_before
    try:
        from torch.utils.serialization import config
    except ImportError:  # torch < 2.6 has no switch: CRCs are computed
        yield
        return
    if enabled:
        yield
        return
    with _crc_lock:
        if _crc_writers == 0:
            _crc_before = config.save.compute_crc32
            config.save.compute_crc32 = False
        _crc_writers += 1
    try:
        yield
    finally:
        with _crc_lock:
            _crc_writers -= 1
            if _crc_writers == 0:
                config.save.compute_crc32 = _crc_before


def distributed_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


class TorchSaveCodec:
    """One `torch.save` file per rank: simple, exact, needs the same world size to resume."""

    name = "torch-save"
    needs_same_world_size = True

    def __init__(self, zip_crc32: bool = False) -> None:
        self.zip_crc32 = zip_crc32  # see zip_crc32(): never checked on load

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        self.write(directory, snapshot(state), rank)

    def stage(self, state: Mapping[str, Any], rank: int) -> Any:
        """For background saves: the state dicts with every tensor copied to host memory.

        Serialisation (and torch.save's CRC32) then happen in the writer thread, not here.
        """
        return host_copy(snapshot(state))

    def write(self, directory: Path, staged: Any, rank: int) -> None:
        with open(rank_file(directory, rank, ".pt"), "wb") as fh, zip_crc32(self.zip_crc32):
            torch.save(staged, fh)
            fh.flush()
            os.fsync(fh.fileno())

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        loaded = torch.load(rank_file(directory, rank, ".pt"), weights_only=True)
        restore_into(state, loaded)


def per_rank_key(key: str, rank: int) -> str:
    """Where DCP keeps rank `rank`'s value of a `PerRank` entry: a key of its own, so DCP's
    de-duplication of replicated values does not fold the ranks' values into one."""
    return f"{key}@rank{rank:05d}"


def dcp_entries(state: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """The state as DCP sees it: `PerRank` entries unwrapped under this rank's own key."""
    entries = {}
    for key, value in state.items():
        if isinstance(value, PerRank):
            entries[per_rank_key(key, rank)] = value.value
        else:
            entries[key] = value
    return entries


class DCPCodec:
    """`torch.distributed.checkpoint`: every rank writes its shards, loads reshard as needed.

    Pass stateful objects (e.g. `ModelOptimizerState`) or tensors; DCP calls `state_dict()` itself.
    What reshards: DTensor/ShardedTensor shards (FSDP2, tensor parallel) are re-cut for the new
    world size, and replicated values (DDP parameters and optimizer state, plain tensors and
    objects) are written once and read by every rank. A plain value that differs between ranks
    must be wrapped in `PerRank`, or DCP keeps one rank's value for all.
    """

    name = "dcp"
    needs_same_world_size = False

    def __init__(
        self,
        thread_count: int = DCP_WRITER_THREADS,
        single_file_per_rank: bool = True,
        zip_crc32: bool = False,
    ) -> None:
        self.thread_count, self.single_file_per_rank = thread_count, single_file_per_rank
        self.zip_crc32 = zip_crc32  # DCP writes every tensor with torch.save: see zip_crc32()
        self._background_group: Any = None

    def _writer(self, directory: Path) -> Any:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter

        return FileSystemWriter(
            str(directory),
            single_file_per_rank=self.single_file_per_rank,
            sync_files=True,
            overwrite=False,
            thread_count=self.thread_count,
        )

    def save(self, directory: Path, state: Mapping[str, Any], rank: int) -> None:
        from torch.distributed.checkpoint.state_dict_saver import save

        with zip_crc32(self.zip_crc32):
            save(dcp_entries(state, rank), storage_writer=self._writer(directory))
        if rank == 0:
            fsync_dir(directory)

    def stage(self, state: Mapping[str, Any], rank: int) -> dict[str, Any]:
        """A CPU copy of the state dicts (what `dcp.async_save` stages), taken in this thread.

        The background write then runs DCP's collective planning on a gloo group of its own,
        created here on the first call (every rank stages at the same step), so it never
        interleaves with the training loop's collectives (KempnerForge#104).
        """
        from torch.distributed.checkpoint.staging import BlockingAsyncStager
        from torch.distributed.checkpoint.stateful import Stateful

        if self._background_group is None and distributed_ready():
            self._background_group = dist.new_group(backend="gloo")
        plain = {
            k: v.state_dict() if isinstance(v, Stateful) else v
            for k, v in dcp_entries(state, rank).items()
        }
        return dict(BlockingAsyncStager().stage(plain))

    def write(self, directory: Path, staged: dict[str, Any], rank: int) -> None:
        from torch.distributed.checkpoint.state_dict_saver import save

        with zip_crc32(self.zip_crc32):
            save(
                staged,
                storage_writer=self._writer(directory),
                process_group=self._background_group,
            )
        if rank == 0:
            fsync_dir(directory)

    def load(self, directory: Path, state: MutableMapping[str, Any], rank: int) -> None:
        from torch.distributed.checkpoint.state_dict_loader import load

        target = dcp_entries(state, rank)
        load(target, checkpoint_id=str(directory))  # stateful values: their load_state_dict
        for key, value in list(state.items()):
            inner = value.value if isinstance(value, PerRank) else value
            if not hasattr(inner, "load_state_dict"):
                loaded = target[per_rank_key(key, rank) if isinstance(value, PerRank) else key]
                load_value(state, key, loaded)


class ModelOptimizerState:
    """A DCP `Stateful` for a model and its optimizer (DDP/FSDP aware through get_state_dict)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        optimizers = [self.optimizer] if self.optimizer else []
        model_sd, optim_sd = get_state_dict(self.model, optimizers)
        return {"model": model_sd, "optim": optim_sd}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_state_dict

        optimizers = [self.optimizer] if self.optimizer else []
        set_state_dict(
            self.model,
            optimizers,
            model_state_dict=state["model"],
            optim_state_dict=state["optim"] if self.optimizer else {},
        )


__all__ = [
    "DCPCodec",
    "ModelOptimizerState",
    "TorchCollective",
    "TorchSaveCodec",
    "distributed_ready",
]
