"""PyTorch integration: gloo collectives for the stop flag, `torch.save` and DCP codecs.

Imported only when the training script uses torch (the checkpointer picks it when `torch` is
already in `sys.modules`), so the core keeps working in torch-free containers.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import pickle
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kubetrain.runtime.collective import PerRank, load_value, rank_file, restore_into, snapshot
from kubetrain.runtime.posix import fsync_dir

log = logging.getLogger(__name__)

BROADCAST_BYTES = 255  # checkpoint names are ~30 bytes
# Plain tensors up to this size are compared across ranks before a DCP save (larger ones are
# parameters and optimizer state: replicated by DDP, or DTensors that DCP shards itself).
COMPARED_TENSOR_BYTES = 1 << 20
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


def release_process_groups() -> None:
    """Destroy every process group of this process, when there is one (PyTorch's advice before
    a process exits: kubetrain.runtime.checkpointer.Checkpointer.exit_checkpointed)."""
    if distributed_ready():
        dist.destroy_process_group()


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


def _digest(value: Any) -> int | None:
    """A 63-bit digest of a small plain leaf; None for what DCP shards itself or is too big."""
    if type(value).__name__ in ("DTensor", "ShardedTensor"):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() * value.element_size() > COMPARED_TENSOR_BYTES:
            return None
        value = value.detach().cpu().contiguous()
        payload = (
            str((value.dtype, tuple(value.shape))).encode()
            + value.view(-1).view(torch.uint8).numpy().tobytes()
        )
    else:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # not picklable: DCP will say so itself
            return None
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big") >> 1


def leaf_digests(plain: Mapping[str, Any], prefix: str = "") -> dict[str, int]:
    """Digests of the small plain leaves of a state dict, by dotted path."""
    out: dict[str, int] = {}
    for key, value in plain.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(leaf_digests(value, f"{path}."))
        elif isinstance(value, list | tuple) and not isinstance(value, str):
            out.update(leaf_digests({str(i): v for i, v in enumerate(value)}, f"{path}."))
        elif (digest := _digest(value)) is not None:
            out[path] = digest
    return out


def differing_leaves(plain: Mapping[str, Any], group: Any) -> list[str]:
    """Collective: the small plain leaves whose values differ between ranks (DCP would keep
    one rank's value for every rank). Empty when the ranks hold different keys: DCP writes
    each rank's own keys anyway."""
    digests = leaf_digests(plain)
    names = sorted(digests)
    keys = int.from_bytes(hashlib.blake2b("\0".join(names).encode(), digest_size=8).digest())
    values = torch.tensor([keys >> 1] + [digests[n] for n in names], dtype=torch.int64)
    low, high = values.clone(), values.clone()
    sizes = torch.tensor([len(names), -len(names)], dtype=torch.int64)
    dist.all_reduce(sizes, op=dist.ReduceOp.MIN, group=group)
    if int(sizes[0]) != -int(sizes[1]):
        return []  # different numbers of leaves: nothing to compare element by element
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=group)
    if int(low[0]) != int(high[0]):
        return []
    return [n for i, n in enumerate(names, start=1) if int(low[i]) != int(high[i])]


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
        self._check_group: Any = None
        self._warned: set[str] = set()

    def _check_replicated(self, plain: Mapping[str, Any]) -> None:
        """Collective: say loudly when a plain value differs between ranks. DCP treats plain
        values as replicated and writes one copy, so on resume every rank would get that one;
        the save itself goes on (an emergency save must not be lost over it)."""
        if not distributed_ready() or dist.get_world_size() == 1:
            return
        if self._check_group is None and dist.get_backend() != "gloo":
            # CPU tensors need gloo; created at the first save, which every rank makes at the
            # same step. Never the background group: an abandoned write may still use it.
            self._check_group = dist.new_group(backend="gloo")
        differ = [n for n in differing_leaves(plain, self._check_group) if n not in self._warned]
        if differ:
            self._warned.update(differ)
            log.error(
                "state entries %s differ between ranks; DCP keeps one copy of a plain value, "
                "so a resume gives every rank the same one: wrap each such top-level entry in "
                "kubetrain.runtime.PerRank(...) (or make it a DTensor)",
                differ[:10],
            )

    def _plain(self, state: Mapping[str, Any], rank: int) -> dict[str, Any]:
        """Collective: the state dicts DCP writes (`state_dict()` of stateful values, `PerRank`
        entries under this rank's key), checked for plain values that differ between ranks."""
        from torch.distributed.checkpoint.stateful import Stateful

        plain = {
            k: v.state_dict() if isinstance(v, Stateful) else v
            for k, v in dcp_entries(state, rank).items()
        }
        self._check_replicated({k: v for k, v in plain.items() if k in state})
        return plain

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

        plain = self._plain(state, rank)
        with zip_crc32(self.zip_crc32):
            save(plain, storage_writer=self._writer(directory))
        if rank == 0:
            fsync_dir(directory)

    def stage(self, state: Mapping[str, Any], rank: int) -> dict[str, Any]:
        """A CPU copy of the state dicts (what `dcp.async_save` stages), taken in this thread.

        The background write then runs DCP's collective planning on a gloo group of its own,
        created here on the first call (every rank stages at the same step), so it never
        interleaves with the training loop's collectives (KempnerForge#104).
        """
        from torch.distributed.checkpoint.staging import BlockingAsyncStager

        if self._background_group is None and distributed_ready():
            self._background_group = dist.new_group(backend="gloo")
        return dict(BlockingAsyncStager().stage(self._plain(state, rank)))

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
