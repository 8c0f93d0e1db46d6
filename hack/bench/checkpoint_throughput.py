#!/usr/bin/env python3
"""Checkpoint save throughput as a fraction of the same disk's raw sequential write speed, and
the training stall of a background (periodic) save against its full duration.

Raw: one file written in 8 MiB chunks, then fsync. Checkpoint: `Checkpointer.save` of a state of
the same size (fresh data dir, per-file fsync, directory fsyncs, manifest commit, GC), per codec.
Background: `Checkpointer.save_async` (the stall: agreement, copy to host memory, hand-off) plus
the commit at the next step (`flush` once the write is done), against start-to-commit.
`dcp` is the runtime's default (DCP_WRITER_THREADS FileSystemWriter threads per rank, one
file per thread, torch.save's record CRCs off: torch.load never checks them), `dcp-crc` the same
with CRCs computed (the default before), `dcp-t<N>` N threads, `dcp-files` one file per tensor;
`torch-save-crc` likewise. Every codec fsyncs every file it writes, as the raw write does, and
the commit adds the directory fsyncs and the manifest (the atomic commit's real cost is counted).
--warmup rounds run first and are not counted. Every round measures the raw write right before
each codec, so a ratio compares two writes made moments apart (the machine may be shared); the
numbers are medians over --repeats rounds, beside the fastest of each (other tenants only ever
add time) and the bytes each wrote (the manifest's file sizes) against the raw write's.
Writes hack/bench/results/checkpoint_throughput.json and prints it.

    .venv/bin/python hack/bench/checkpoint_throughput.py [--dir /fsx/tmp] [--size-mib 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
warnings.filterwarnings("ignore")

from kubetrain.runtime import Checkpointer  # noqa: E402

CHUNK = 8 << 20


def raw_write_seconds(directory: Path, payload: bytes) -> float:
    path = directory / "raw.bin"
    view = memoryview(payload)
    started = time.perf_counter()
    with open(path, "wb", buffering=0) as fh:
        for offset in range(0, len(view), CHUNK):
            fh.write(view[offset : offset + CHUNK])
        os.fsync(fh.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def make_codec(name: str) -> Any:
    """A codec name as the Checkpointer takes it, or a variant of this benchmark."""
    if not name.endswith("-crc") and not name.startswith("dcp-"):
        return name
    from kubetrain.runtime.torch_support import DCPCodec, TorchSaveCodec

    if name == "torch-save-crc":
        return TorchSaveCodec(zip_crc32=True)
    if name == "dcp-crc":
        return DCPCodec(zip_crc32=True)
    if name == "dcp-files":
        return DCPCodec(single_file_per_rank=False)
    return DCPCodec(thread_count=int(name.removeprefix("dcp-t")))


def make_state(codec: str, size: int) -> dict[str, Any]:
    if codec == "pickle":
        # Several "layers" of random bytes: incompressible, like trained weights.
        return {f"layer{i}": os.urandom(size // 8) for i in range(8)}
    import torch

    n = size // 4 // 8
    return {f"layer{i}": torch.rand(n) for i in range(8)}


def checkpoint_seconds(
    directory: Path, codec: str, state: dict[str, Any], step: int
) -> tuple[float, int]:
    """(start to commit, bytes of the checkpoint's data files) of one synchronous save."""
    ckpt = Checkpointer(directory, job="bench", keep=1, codec=make_codec(codec))
    started = time.perf_counter()
    manifest = ckpt.save(step, state)
    return time.perf_counter() - started, sum(f.size for f in manifest.files)


def background_seconds(
    directory: Path, codec: str, state: dict[str, Any], step: int
) -> tuple[float, float]:
    """(training stall, start to commit) of one background periodic save."""
    ckpt = Checkpointer(directory, job="bench", keep=1, codec=make_codec(codec))
    started = time.perf_counter()
    ckpt.save_async(step, state)
    handed_off = time.perf_counter()
    assert ckpt.inflight is not None
    ckpt.inflight.wait(600)  # the training loop would be computing meanwhile
    written = time.perf_counter()
    ckpt.flush()  # what the next step() does once every rank's write is done: the commit
    committed = time.perf_counter()
    return (handed_off - started) + (committed - written), committed - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first")
    parser.add_argument(
        "--codecs",
        default="pickle,torch-save,torch-save-crc,dcp,dcp-crc,dcp-t1,dcp-t4,dcp-files",
    )
    parser.add_argument("--background", default="pickle,torch-save,dcp", help="async codecs")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "hack/bench/results/checkpoint_throughput.json"
    )
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    size = args.size_mib << 20
    base = Path(tempfile.mkdtemp(prefix="kubetrain-bench-", dir=args.dir))
    try:
        # Interleaved (raw, then each codec) per round, so load changes on a shared machine hit
        # both sides alike; ratios are per round, then the median is taken.
        payload = os.urandom(size)  # incompressible, like trained weights
        codecs = args.codecs.split(",")
        background = [c for c in args.background.split(",") if c]
        kinds = {c: "pickle" if c == "pickle" else "torch" for c in {*codecs, *background}}
        written: dict[str, int] = {}
        made = {kind: make_state(kind, size) for kind in set(kinds.values())}  # shared: memory
        states = {codec: made[kind] for codec, kind in kinds.items()}
        raws: dict[str, list[float]] = {codec: [] for codec in codecs}
        runs: dict[str, list[float]] = {codec: [] for codec in codecs}
        stalls: dict[str, list[tuple[float, float]]] = {codec: [] for codec in background}
        for step in range(1, args.warmup + args.repeats + 1):
            counted = step > args.warmup
            for codec in codecs:
                raw_seconds = raw_write_seconds(base, payload)
                seconds, written[codec] = checkpoint_seconds(
                    base / codec, codec, states[codec], step
                )
                if counted:
                    raws[codec].append(raw_seconds)
                    runs[codec].append(seconds)
            for codec in background:
                where = base / f"bg-{codec}"
                measured = background_seconds(where, codec, states[codec], step)
                if counted:
                    stalls[codec].append(measured)
        all_raws = [r for rs in raws.values() for r in rs]
        raw = statistics.median(all_raws)
        raw_mib_s = args.size_mib / raw
        results = []
        for codec in codecs:
            ratios = [r / c for r, c in zip(raws[codec], runs[codec], strict=True)]
            seconds = statistics.median(runs[codec])
            results.append(
                {
                    "codec": codec,
                    "seconds": round(seconds, 3),
                    "mib_per_s": round(args.size_mib / seconds, 1),
                    "ratio_to_raw": round(statistics.median(ratios), 3),
                    "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
                    "ratios": [round(x, 3) for x in ratios],
                    # Other tenants' load only ever adds time: the fastest of each is the
                    # least disturbed estimate of what the disk and the code can do.
                    "fastest_seconds": round(min(runs[codec]), 3),
                    "fastest_ratio_to_fastest_raw": round(min(all_raws) / min(runs[codec]), 3),
                    "bytes_vs_raw": round(written[codec] / size, 4),
                }
            )
        periodic = []
        for codec in background:
            stall = [s for s, _ in stalls[codec]]
            full = [f for _, f in stalls[codec]]
            periodic.append(
                {
                    "codec": codec,
                    "stall_seconds": round(statistics.median(stall), 3),
                    "full_seconds": round(statistics.median(full), 3),
                    "stall_fraction": round(statistics.median(s / f for s, f in stalls[codec]), 3),
                    "fastest_stall_seconds": round(min(stall), 3),
                    "fastest_full_seconds": round(min(full), 3),
                }
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = {
        "what": "Checkpointer.save (fresh data dir, fsync, manifest commit) vs raw sequential write",
        "command": "python hack/bench/checkpoint_throughput.py " + " ".join(sys.argv[1:]),
        "size_mib": args.size_mib,
        "repeats": args.repeats,
        "warmup_rounds": args.warmup,
        "disk_dir": str(args.dir or tempfile.gettempdir()),
        "raw_write": {
            "seconds": round(raw, 3),
            "mib_per_s": round(raw_mib_s, 1),
            "min_max_seconds": [round(min(all_raws), 3), round(max(all_raws), 3)],
        },
        "results": results,
        "background_periodic_save": {
            "what": "stall = save_async + commit in the training thread; full = start to commit; "
            "no training runs meanwhile here (on a real run the write competes with it)",
            "results": periodic,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1m_at_start": round(load_at_start, 2),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
