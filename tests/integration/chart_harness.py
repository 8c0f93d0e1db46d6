"""Helpers for the Helm chart tests: the pinned helm binary and rendering the chart.

Not a test module (no test_ prefix); imported by tests/integration/test_chart*.py.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests" / "charts" / "kubetrain"


@functools.cache
def helm_bin() -> str:
    """helm as pinned by hack/tools.sh (built when missing: idempotent, minutes once)."""
    built = subprocess.run([str(ROOT / "hack" / "tools.sh")], capture_output=True, text=True)
    assert built.returncode == 0, (
        f"hack/tools.sh failed (needs Go and the module proxy):\n{built.stderr}"
    )
    tools = subprocess.run(
        [str(ROOT / "hack" / "tools.sh"), "--print"], check=True, capture_output=True, text=True
    ).stdout.strip()
    binary = Path(tools) / "helm"
    assert os.access(binary, os.X_OK), f"hack/tools.sh did not produce {binary}"
    return str(binary)


def helm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def render(*args: str, namespace: str = "kubetrain-system") -> list[dict[str, Any]]:
    out = helm("template", "kubetrain", str(CHART), "-n", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the rendered chart"
    return found[0]
