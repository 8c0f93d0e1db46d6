"""The README's checkpointing snippet is the code of `python -m kubetrain.runtime.example`, and that
script survives a SIGTERM: it saves, exits 83, and a second run continues where it stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubetrain.api.constants import EXIT_CHECKPOINTED_AND_STOPPED
from support import wait_for

pytestmark = pytest.mark.torch
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "operator" / "kubetrain" / "runtime" / "example.py"


def snippet_in_example() -> str:
    text = EXAMPLE.read_text()
    body = text.split("# readme:start\n", 1)[1].split("    # readme:end", 1)[0]
    return "\n".join(line.removeprefix("    ") for line in body.splitlines()).strip()


def test_readme_shows_the_example_code_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert snippet_in_example() in [b.strip() for b in blocks], (
        "README.md's checkpointing snippet drifted from kubetrain/runtime/example.py: "
        "copy the lines between `# readme:start` and `# readme:end` into the README"
    )


def test_example_stops_with_83_on_sigterm_and_resumes(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        KUBETRAIN_CHECKPOINT_DIR=str(tmp_path),
        EXAMPLE_STEPS="400",
        EXAMPLE_STEP_SECONDS="0.01",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "kubetrain.runtime.example"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    manifests = tmp_path / "manifests"
    wait_for(
        lambda: manifests.exists() and any(manifests.glob("step-000000000100-*.json")),
        timeout=60,
        what="first periodic checkpoint",
    )
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == EXIT_CHECKPOINTED_AND_STOPPED, out.decode()[-2000:]
    stopped_at = max(int(p.name[5:17]) for p in manifests.glob("step-*.json"))
    assert 100 <= stopped_at < 400

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"trained steps {stopped_at}..400" in second.stdout


def test_readme_pipelines_snippet_is_the_tested_file() -> None:
    snippet = (ROOT / "components/kubetrain_kfp/examples/readme_snippet.py").read_text().strip()
    readme = (ROOT / "README.md").read_text()
    blocks = [b.strip() for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)]
    assert snippet in blocks, (
        "README.md's Pipelines snippet drifted from components/kubetrain_kfp/examples/"
        "readme_snippet.py (which tests/integration/test_sagemaker_kfp_local.py runs)"
    )
