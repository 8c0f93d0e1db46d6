"""Framework adapters in real processes: a run stopped by SIGTERM saves at that step and exits 83,
the next run resumes from it and continues with the same losses, ending with parameters bitwise
equal to a run that was never interrupted. Models are tiny and built from configs (no downloads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetrain.api.constants import EXIT_CHECKPOINTED_AND_STOPPED

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
