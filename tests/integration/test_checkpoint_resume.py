"""Exact continuation: 2 ranks over gloo, interrupted and resumed, bitwise equal to a clean run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetrain.api.constants import EXIT_CHECKPOINTED_AND_STOPPED
from kubetrain.runtime import PosixTier, discover
from kubetrain.runtime.manifest import parse_name
from support import free_port, wait_for

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("train_toy.py")
STEPS = 60
WORLD = 2


@dataclass
class Run:
    procs: list[subprocess.Popen[bytes]]
    progress: Path
    result: Path

    def steps_done(self) -> int:
        try:
            return int(self.progress.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def wait(self, timeout: float = 120) -> list[int]:
        return [p.wait(timeout=timeout) for p in self.procs]

    def output(self) -> str:
        return "\n".join(
            (p.stdout.read() or b"").decode(errors="replace") for p in self.procs if p.stdout
        )


def launch(
    tmp: Path, ckpt_dir: Path, tag: str, *extra: str, world: int = WORLD, steps: int = STEPS
) -> Run:
    port = str(free_port())
    progress, result = tmp / f"{tag}.progress", tmp / f"{tag}.json"
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "tests")]),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "KUBETRAIN_CHECKPOINT_DIR": str(ckpt_dir),
            "KUBETRAIN_JOB": "toy",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, str(SCRIPT), "--steps", str(steps), "--progress", str(progress)]
        procs.append(
            subprocess.Popen(
                [*cmd, "--result", str(result), *extra],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # like torchrun: one process group per worker
            )
        )
    return Run(procs, progress, result)


def final_params(run: Run) -> dict[str, torch.Tensor]:
    doc = json.loads(run.result.read_text())
    return dict(torch.load(doc["params"], weights_only=True))


def start_step(run: Run) -> int:
    return int(json.loads(run.result.read_text())["start"])


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        assert torch.equal(a[key].view(torch.uint8), b[key].view(torch.uint8)), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("reference")
    run = launch(tmp, tmp / "ckpt", "ref")
    assert run.wait() == [0, 0], run.output()
    assert start_step(run) == 0
    return final_params(run)


@pytest.mark.parametrize(
    ("codec", "workers"),
    [
        # torchrun-style: SIGTERM to rank 1's whole process group, DataLoader workers included.
        ("torch-save", 1),
        ("dcp", 0),
    ],
)
def test_sigterm_to_one_rank_then_resume_is_exact(
    tmp_path: Path, reference: dict[str, torch.Tensor], codec: str, workers: int
) -> None:
    stop_at = random.randint(5, STEPS - 10)
    ckpt_dir = tmp_path / "ckpt"
    first = launch(
        tmp_path, ckpt_dir, "first",
        "--codec", codec, "--step-delay", "0.05", "--workers", str(workers),
        "--exit-report", str(tmp_path / "exit"),
    )  # fmt: skip
    wait_for(lambda: first.steps_done() >= stop_at, timeout=90, what=f"step {stop_at}")
    # Only rank 1's "node" gets the notice: the all-reduced flag must stop rank 0 too.
    if workers:
        os.killpg(first.procs[1].pid, signal.SIGTERM)
    else:
        first.procs[1].send_signal(signal.SIGTERM)
    codes = first.wait()
    assert codes == [EXIT_CHECKPOINTED_AND_STOPPED] * WORLD, first.output()
    # Every rank destroyed its process groups before the interpreter's teardown (left to it,
    # gloo's threads aborted rank 0 now and then: exit -6 instead of 83).
    reports = [(tmp_path / f"exit.rank{rank}").read_text() for rank in range(WORLD)]
    assert reports == ["false"] * WORLD, first.output()
    saved = discover(PosixTier(ckpt_dir))
    assert saved is not None and saved.kind == "emergency" and saved.codec == codec
    assert stop_at <= saved.step < STEPS
    assert saved.step == first.steps_done()  # saved at the step it stopped: no work lost
    if codec == "dcp":
        assert any(f.path.endswith("/.metadata") for f in saved.files)

    second = launch(tmp_path, ckpt_dir, "second", "--codec", codec)
    assert second.wait() == [0, 0], second.output()
    assert start_step(second) == saved.step
    assert_bitwise_equal(final_params(second), reference)


def test_kill_without_notice_loses_only_steps_since_periodic(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    every = 7
    kill_at = random.randint(every + 1, STEPS - 10)
    ckpt_dir = tmp_path / "ckpt"
    first = launch(tmp_path, ckpt_dir, "first", "--every", str(every), "--step-delay", "0.05")
    wait_for(lambda: first.steps_done() >= kill_at, timeout=90, what=f"step {kill_at}")
    for proc in first.procs:
        proc.kill()  # the node vanished: no SIGTERM, no emergency save
    assert first.wait() == [-signal.SIGKILL] * WORLD
    reached = first.steps_done()
    committed = discover(PosixTier(ckpt_dir))
    assert committed is not None and committed.kind == "periodic"
    assert committed.step % every == 0 and committed.step <= reached

    second = launch(tmp_path, ckpt_dir, "second", "--every", str(every))
    assert second.wait() == [0, 0], second.output()
    resumed = start_step(second)
    assert resumed == committed.step
    lost = reached - resumed
    # The steps lost are those since the newest committed checkpoint. Periodic saves commit in
    # the background, and the next due save waits for the last one, so that is less than two
    # periods (a kill while one period's save is still being written loses that one too).
    assert 0 <= lost < 2 * every, (reached, resumed)
    assert_bitwise_equal(final_params(second), reference)


def in_flight(ckpt_dir: Path) -> tuple[int, int] | None:
    """(newest committed step, a newer step whose data directory has no manifest yet)."""
    steps = lambda top: {  # noqa: E731
        parsed[0] for p in (ckpt_dir / top).glob("step-*") if (parsed := parse_name(p.name))
    }
    try:
        done, started = steps("manifests"), steps("data")
    except FileNotFoundError:
        return None
    writing = [s for s in started - done if done and s > max(done)]
    return (max(done), max(writing)) if writing else None


@pytest.mark.parametrize("codec", ["torch-save", "dcp"])
def test_kill_during_a_background_save_resumes_from_the_previous_one(
    tmp_path: Path, reference: dict[str, torch.Tensor], codec: str
) -> None:
    every = 5
    ckpt_dir = tmp_path / "ckpt"
    first = launch(
        tmp_path, ckpt_dir, "first",
        "--codec", codec, "--every", str(every), "--step-delay", "0.05", "--write-delay", "1.5",
    )  # fmt: skip
    # Past the first commit, and a later save staged and being written: kill -9 right there.
    caught = wait_for(lambda: in_flight(ckpt_dir), timeout=90, what="a save in flight")
    for proc in first.procs:
        proc.kill()
    assert first.wait() == [-signal.SIGKILL] * WORLD
    previous, torn = caught
    found = discover(PosixTier(ckpt_dir))
    assert found is not None and found.step == previous and found.kind == "periodic"
    assert list((ckpt_dir / "data").glob(f"step-{torn:012d}-*")), "the in-flight save left its dir"
    assert not list((ckpt_dir / "manifests").glob(f"step-{torn:012d}-*"))

    second = launch(tmp_path, ckpt_dir, "second", "--codec", codec, "--every", str(every))
    assert second.wait() == [0, 0], second.output()
    assert start_step(second) == previous
    assert_bitwise_equal(final_params(second), reference)


# --- a different world size on resume (elastic shrink and grow) --------------------------------


def dumped(directory: Path, what: str, rank: int) -> dict[str, Any]:
    """What train_toy.py --dump wrote: parameters, optimizer state and the PerRank entry."""
    return dict(torch.load(directory / f"{what}-rank{rank}.pt", weights_only=True))


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Equal structure, and every tensor bitwise equal with the same dtype."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, a.keys(), b)
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_dcp_shrinks_to_one_rank_and_grows_back_exactly(tmp_path: Path) -> None:
    ckpt_dir, dumps = tmp_path / "ckpt", tmp_path / "dumps"
    every = ("--codec", "dcp", "--every", "10")
    two = launch(tmp_path, ckpt_dir, "two", *every, "--dump", str(dumps / "two"), steps=20)
    assert two.wait() == [0, 0], two.output()
    written = discover(PosixTier(ckpt_dir))
    assert written is not None and (written.step, written.world_size) == (20, 2)
    trained = dumped(dumps / "two", "final", 0)
    assert_same_state(dumped(dumps / "two", "final", 1), trained)  # DDP: replicated
    assert trained["optim"]["state"], "Adam has moments to restore"

    # Shrink: one rank restores the 2-rank checkpoint, parameters and Adam state bit for bit.
    one = launch(tmp_path, ckpt_dir, "one", *every, "--dump", str(dumps / "one"), world=1, steps=30)
    assert one.wait() == [0], one.output()
    assert start_step(one) == 20
    assert_same_state(dumped(dumps / "one", "restored", 0), trained)
    shrunk = discover(PosixTier(ckpt_dir))
    assert shrunk is not None and (shrunk.step, shrunk.world_size) == (30, 1)
    trained_alone = dumped(dumps / "one", "final", 0)
    with pytest.raises(AssertionError):  # it trained on: the grow-back below proves something
        assert_same_state(trained_alone["model"], trained["model"])

    # Grow back: two ranks restore what the single rank wrote, each the whole of it.
    back = launch(tmp_path, ckpt_dir, "back", *every, "--dump", str(dumps / "back"), steps=40)
    assert back.wait() == [0, 0], back.output()
    assert start_step(back) == 30
    for rank in range(WORLD):
        assert_same_state(dumped(dumps / "back", "restored", rank), trained_alone)
    grown = discover(PosixTier(ckpt_dir))
    assert grown is not None and (grown.step, grown.world_size) == (40, 2)
    everything = two.output() + one.output() + back.output()
    assert "differ between ranks" not in everything  # DDP state is replicated: no false alarm


@pytest.mark.parametrize("codec", ["torch-save", "pickle"])
def test_per_rank_files_refuse_another_world_size_and_name_the_fix(
    tmp_path: Path, codec: str
) -> None:
    ckpt_dir = tmp_path / "ckpt"
    two = launch(tmp_path, ckpt_dir, "two", "--codec", codec, "--every", "10", steps=10)
    assert two.wait() == [0, 0], two.output()
    written = discover(PosixTier(ckpt_dir))
    assert written is not None and (written.step, written.world_size) == (10, 2)

    one = launch(tmp_path, ckpt_dir, "one", "--codec", codec, world=1, steps=20)
    assert one.wait() != [0]
    out = one.output()
    assert f"{written.name} was written by 2 ranks with codec {codec!r}, this run has 1" in out, out
    assert "keep the same nodes x perNode, or save with codec='dcp'" in out, out
    assert discover(PosixTier(ckpt_dir)) == written  # nothing trained, nothing written


def test_dcp_per_rank_entries_are_each_ranks_own_and_never_resharded(tmp_path: Path) -> None:
    ckpt_dir, dumps = tmp_path / "ckpt", tmp_path / "dumps"
    dcp = ("--codec", "dcp", "--per-rank")
    two = launch(tmp_path, ckpt_dir, "two", *dcp, "--every", "10", steps=10)
    assert two.wait() == [0, 0], two.output()

    # Another world size: refused, naming the entry and the way out.
    one = launch(tmp_path, ckpt_dir, "one", *dcp, world=1, steps=10)
    assert one.wait() != [0]
    out = one.output()
    assert "state entries ['local'] hold one value per rank (PerRank)" in out, out
    assert "per_rank_on_resize='keep'" in out, out

    # ... or, when asked, loaded without them: they keep this run's own initial value.
    kept = launch(
        tmp_path, ckpt_dir, "kept", *dcp, "--per-rank-on-resize", "keep",
        "--dump", str(dumps / "kept"), world=1, steps=10,
    )  # fmt: skip
    assert kept.wait() == [0], kept.output()
    restored = dumped(dumps / "kept", "restored", 0)
    assert torch.equal(restored["local"], torch.full((4,), 0.0))

    # The same world size: every rank gets its own value back, not rank 0's for all.
    again = launch(tmp_path, ckpt_dir, "again", *dcp, "--dump", str(dumps / "again"), steps=10)
    assert again.wait() == [0, 0], again.output()
    for rank in range(WORLD):
        local = dumped(dumps / "again", "restored", rank)["local"]
        assert torch.equal(local, torch.full((4,), rank * 1000.0 + 10)), (rank, local)
    assert_same_state(dumped(dumps / "again", "restored", 0)["model"], restored["model"])
    assert "differ between ranks" not in two.output() + again.output()


def test_dcp_names_plain_values_that_differ_between_ranks(tmp_path: Path) -> None:
    # Saved as if replicated, DCP would hand rank 0's value to every rank on resume.
    run = launch(
        tmp_path, tmp_path / "ckpt", "plain", "--codec", "dcp", "--plain-per-rank",
        "--every", "5", steps=10,
    )  # fmt: skip
    assert run.wait() == [0, 0]
    out = run.output()
    assert "state entries ['local'] differ between ranks" in out, out
    assert "wrap each such top-level entry in kubetrain.runtime.PerRank(...)" in out, out
    assert out.count("differ between ranks") == WORLD  # once per rank, not at every save
