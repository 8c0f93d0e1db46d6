"""Framework adapters in real processes: a run stopped by SIGTERM saves at that step and exits 83,
the next run resumes from it and continues with the same losses, ending with parameters bitwise
equal to a run that was never interrupted. Models are tiny and built from configs (no downloads).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetrain.api.constants import EXIT_CHECKPOINTED_AND_STOPPED
from support import free_port

pytestmark = pytest.mark.torch
HERE = Path(__file__).resolve().parent


def run(script: str, out: Path, ckpt: Path, **env: str) -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETRAIN_", "KUBECONFIG"))}
    full.update(KUBETRAIN_CHECKPOINT_DIR=str(ckpt), **env)
    return subprocess.run(
        [sys.executable, str(HERE / script)],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )


def losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    steps = [rec["step"] for rec in records]
    assert len(steps) == len(set(steps)), f"steps trained twice: {steps}"
    return {rec["step"]: rec["loss"] for rec in records}


@pytest.mark.parametrize(
    ("script", "prefix"),
    [("hf_train.py", "HF"), ("lightning_train.py", "PL")],
    ids=["huggingface", "lightning"],
)
def test_stop_on_sigterm_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, script: str, prefix: str
) -> None:
    for module in (
        ("transformers", "accelerate") if prefix == "HF" else ("pytorch_lightning", "torchdata")
    ):
        pytest.importorskip(module)  # optional: pip install 'kubetrain[frameworks]'

    reference = run(
        script, tmp_path / "ref", tmp_path / "ref-ckpt", **{f"{prefix}_OUT": str(tmp_path / "ref")}
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    env = {f"{prefix}_OUT": str(out)}
    stopped = run(script, out, ckpt, **env, **{f"{prefix}_STOP_AT": "6"})
    assert stopped.returncode == EXIT_CHECKPOINTED_AND_STOPPED, stopped.stderr[-3000:]
    manifests = sorted((ckpt / "manifests").glob("step-*.json"))
    assert [m.name[:17] for m in manifests] == ["step-000000000004", "step-000000000006"]
    assert '"kind": "emergency"' in manifests[-1].read_text()
    assert not (out / "params.txt").exists()

    resumed = run(script, out, ckpt, **env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = losses(tmp_path / "ref"), losses(out)
    assert sorted(got) == sorted(expected) == list(range(1, 13))  # 1..6, then 7..12, once each
    assert got == pytest.approx(expected, abs=1e-6)
    assert (out / "params.txt").read_text() == (tmp_path / "ref" / "params.txt").read_text()


class Ranks(list[int]):
    """The ranks' exit codes; `logs` holds the tails of their stderr (shown when a test fails)."""

    logs = ""


def run_ranks(out: Path, ckpt: Path, **env: str) -> Ranks:
    """Two ranks of hf_train.py on gloo (CPU), as two pods' processes would be."""
    port = str(free_port())
    out.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KUBETRAIN_", "KUBECONFIG"))}
    with contextlib.ExitStack() as stack:
        procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "hf_train.py")],
                env={
                    **base,
                    "KUBETRAIN_CHECKPOINT_DIR": str(ckpt),
                    "HF_OUT": str(out),
                    "RANK": str(rank),
                    "LOCAL_RANK": "0",
                    "WORLD_SIZE": "2",
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": port,
                    **env,
                },
                cwd=out,
                stdout=subprocess.DEVNULL,
                stderr=stack.enter_context((out / f"rank{rank}.stderr").open("w")),
            )
            for rank in range(2)
        ]
        codes = Ranks(p.wait(timeout=300) for p in procs)
    codes.logs = "\n".join(
        f"--- rank {rank} exited {code}:\n" + (out / f"rank{rank}.stderr").read_text()[-2000:]
        for rank, code in enumerate(codes)
    )
    return codes


def test_huggingface_two_ranks_agree_on_the_step_when_one_is_told_to_stop(tmp_path: Path) -> None:
    for module in ("transformers", "accelerate"):
        pytest.importorskip(module)
    ref = run_ranks(tmp_path / "ref", tmp_path / "ref-ckpt")
    assert ref == [0, 0], ref.logs

    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    # Only rank 1's pod is drained: rank 0 learns it from the all-reduce, both save step 6.
    codes = run_ranks(out, ckpt, HF_STOP_AT="6", HF_STOP_RANK="1")
    assert codes == [EXIT_CHECKPOINTED_AND_STOPPED] * 2, codes.logs
    newest = sorted((ckpt / "manifests").glob("step-*.json"))[-1]
    manifest = json.loads(newest.read_text())
    assert (manifest["step"], manifest["kind"], manifest["world_size"]) == (6, "emergency", 2)
    assert any("rng_state_1" in f["path"] for f in manifest["files"])  # rank 1 wrote its part

    resumed = run_ranks(out, ckpt)
    assert resumed == [0, 0], resumed.logs
    assert losses(out) == pytest.approx(losses(tmp_path / "ref"), abs=1e-6)
    assert (out / "params.txt").read_text() == (tmp_path / "ref" / "params.txt").read_text()
