"""The runtime in a bare training container: no torch, no kubernetes client, no AWS SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubetrain.api.constants import EXIT_CHECKPOINTED_AND_STOPPED
from support import wait_for

OPERATOR = Path(__file__).resolve().parents[2] / "operator"

BLOCK = """
import sys
class Block:
    BLOCKED = {"torch", "kubernetes", "boto3", "botocore", "pydantic", "kopf", "numpy"}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not installed in this container")
        return None
sys.meta_path.insert(0, Block())
"""


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": str(OPERATOR), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )


def test_import_and_checkpoint_without_optional_packages(tmp_path: Path) -> None:
    proc = run_python(
        """
        from kubetrain.runtime import Checkpointer
        ckpt = Checkpointer.from_env(every_steps=2)   # pod env set: the agent is skipped, loudly
        state = {"weights": [0.0]}
        start = ckpt.restore(state)
        for step in range(start, 5):
            state["weights"] = [w + 1 for w in state["weights"]]
            ckpt.step(step + 1, state)
        ckpt.flush()  # the step-4 save runs in the background: commit it before reading back
        again = {"weights": None}
        print("restored", Checkpointer.from_env().restore(again), again["weights"])
        print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in Block.BLOCKED))
        """,
        tmp_path,
        KUBETRAIN_CHECKPOINT_DIR=str(tmp_path / "ckpt"),
        KUBETRAIN_POD_NAME="p",
        KUBETRAIN_POD_NAMESPACE="ns",
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "restored 4 [4.0]" in out
    assert "loaded []" in out
    assert "checkpoint agent disabled" in out


def test_sigterm_in_a_real_process_exits_83_after_saving(tmp_path: Path) -> None:
    proc = run_python(
        """
        import itertools
        from kubetrain.runtime import Checkpointer
        ckpt = Checkpointer.from_env()
        state = {"n": 0}
        for step in itertools.count(ckpt.restore(state)):
            state["n"] += 1
            if step == 3:
                print("ready", flush=True)
            ckpt.step(step + 1, state)
        """,
        tmp_path,
        KUBETRAIN_CHECKPOINT_DIR=str(tmp_path / "ckpt"),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == EXIT_CHECKPOINTED_AND_STOPPED
    manifests = list((tmp_path / "ckpt" / "manifests").glob("step-*.json"))
    assert len(manifests) == 1 and '"kind": "emergency"' in manifests[0].read_text()


@pytest.mark.parametrize("ignore", [True, False])
def test_dataloader_worker_helper_survives_sigterm(tmp_path: Path, ignore: bool) -> None:
    (tmp_path / "alive").unlink(missing_ok=True)
    proc = run_python(
        f"""
        import time, pathlib
        from kubetrain.runtime import ignore_stop_signals
        if {ignore}:
            ignore_stop_signals(0)
        beat = 0
        while True:
            beat += 1
            pathlib.Path("alive.tmp").write_text(str(beat))
            pathlib.Path("alive.tmp").rename("alive")
            time.sleep(0.01)
        """,
        tmp_path,
    )
    try:
        wait_for(lambda: (tmp_path / "alive").exists(), timeout=30, what="worker start")
        proc.send_signal(signal.SIGTERM)
        if ignore:
            sent_at = int((tmp_path / "alive").read_text())
            wait_for(
                lambda: int((tmp_path / "alive").read_text()) > sent_at + 5,
                timeout=30,
                what="heartbeats after SIGTERM",
            )
            assert proc.poll() is None
            proc.kill()
            assert proc.wait(timeout=10) == -signal.SIGKILL
        else:
            assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
