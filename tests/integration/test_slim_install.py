"""`pip install kubetrain` in a training image: the runtime alone, nothing it did not ask for.

Builds the wheel from this tree, installs it with no dependencies into a fresh venv (offline:
the wheel declares none), and runs the runtime's example there: a training run that checkpoints
and a second run that resumes from it. The example needs torch, which a training image has; it is
made visible to the fresh venv by linking exactly torch and its own dependencies, so anything
else the runtime imported would fail. Neither kopf, pydantic, kfp, the Kubernetes client, PyYAML
nor boto3 is importable there.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_THE_IMAGE = ("kopf", "pydantic", "kfp", "kubernetes", "yaml", "boto3", "botocore")


def build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("operator", "components"):
        shutil.copytree(
            ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(src)],
        check=True,
    )  # fmt: skip
    (wheel,) = out.glob("kubetrain-*.whl")
    return wheel


def requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match
    return match.group(0)


def torch_closure() -> set[str]:
    """torch and the distributions it requires (unconditionally), recursively, as installed."""
    seen: set[str] = set()
    todo = ["torch"]
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # a platform-conditional requirement not installed here
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen.add(key)
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return seen


def link_site(closure: set[str], site: Path) -> None:
    """A directory holding only these distributions (their top-level entries and metadata)."""
    site.mkdir()
    for name in closure:
        dist = md.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)


@pytest.mark.torch
def test_runtime_installs_alone_and_runs_the_example(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    unconditional = [r for r in requires(wheel) if "extra ==" not in r]
    assert unconditional == [], f"pip install kubetrain would pull {unconditional}"
    extras = {_name(r) for r in requires(wheel) if "extra ==" in r}
    assert {"kopf", "pydantic", "kfp", "kubernetes", "boto3"} <= extras

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    closure = torch_closure()
    assert not closure & set(NOT_IN_THE_IMAGE), closure
    link_site(closure, tmp_path / "torch-site")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "torch-site.pth").write_text(str(tmp_path / "torch-site") + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KUBE"))}
    env.update(KUBETRAIN_CHECKPOINT_DIR=str(tmp_path / "ckpt"), EXAMPLE_STEP_SECONDS="0")
    probe = (
        "import importlib.util, kubetrain.runtime, kubetrain.client.views; "
        f"print([m for m in {NOT_IN_THE_IMAGE!r} if importlib.util.find_spec(m)])"
    )
    found = subprocess.run(
        [str(python), "-c", probe], env=env, check=True, capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert found.stdout.strip() == "[]", found.stdout

    def example(steps: int) -> str:
        proc = subprocess.run(
            [str(python), "-m", "kubetrain.runtime.example"],
            env={**env, "EXAMPLE_STEPS": str(steps)},
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert "trained steps 0..200" in example(200)
    assert "trained steps 200..300" in example(300)  # resumed from the step-200 checkpoint
