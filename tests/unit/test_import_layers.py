"""The import contracts in pyproject.toml ([tool.importlinter]) hold: the pure layers never import
kopf or a Kubernetes client, the runtime imports only kubetrain.api's plain modules, the KFP
components never reach into kubetrain's internals."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is missing from the test venv (pyproject [test] extra)"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
