"""`kubetrain-operator` / `python -m kubetrain`: what reaches `kopf run`, and our own options."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kubetrain import __main__ as cli

ROOT = Path(__file__).resolve().parents[2]


def test_console_script_is_kubetrain_operator_and_kubetrain_is_left_for_the_user_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubetrain-operator"] == "kubetrain.__main__:main"
    assert scripts.get("kubetrain") != "kubetrain.__main__:main"
    assert cli.PROG == "kubetrain-operator"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["run", "--all-namespaces", "-m", cli.HANDLERS_MODULE]),
        (
            [
                "--namespace=a",
                "-n",
                "b",
                "--peering=kubetrain",
                "--liveness=http://0.0.0.0:8080/healthz",
            ],
            [
                "run",
                "--namespace",
                "a",
                "--namespace",
                "b",
                "-m",
                cli.HANDLERS_MODULE,
                "--peering=kubetrain",
                "--liveness=http://0.0.0.0:8080/healthz",
            ],
        ),
    ],
)
def test_kopf_arguments(
    argv: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolate(monkeypatch)
    assert cli.kopf_args(argv) == expected


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf_args sets our options in os.environ for kubetrain.handlers: setenv first so that
    monkeypatch restores their absence afterwards (a leak would make later in-process operators
    serve metrics, or watch pods in one namespace only)."""
    for env in (cli.ENV_METRICS_ADDRESS, cli.ENV_NAMESPACES):
        monkeypatch.setenv(env, "unset")
        monkeypatch.delenv(env)


def test_metrics_address_is_ours_not_kopfs(monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate(monkeypatch)
    args = cli.kopf_args(["--metrics-address=0.0.0.0:8081", "--standalone"])
    assert args == ["run", "--all-namespaces", "-m", cli.HANDLERS_MODULE, "--standalone"]
    assert os.environ[cli.ENV_METRICS_ADDRESS] == "0.0.0.0:8081"


@pytest.mark.parametrize(
    ("argv", "scope"),
    [
        ([], None),
        (["-n", "team-a", "--namespace=team-b"], "team-a,team-b"),
        (["-n", "team-*"], None),  # a kopf glob cannot be watched by name: cluster-wide
    ],
)
def test_the_pod_watch_follows_the_namespaces_kopf_serves(
    argv: list[str], scope: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolate(monkeypatch)
    cli.kopf_args(argv)
    assert os.environ.get(cli.ENV_NAMESPACES) == scope


def test_chart_app_version_is_the_package_version() -> None:
    import yaml

    chart = yaml.safe_load((ROOT / "manifests" / "charts" / "kubetrain" / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version


def test_the_operator_process_does_without_the_official_client() -> None:
    """kopf imports the Kubernetes client's generated models when they are installed (45 MiB
    resident, issue 14); the entry point keeps them out, and nothing the operator runs needs them
    (an import of it would fail here)."""
    code = (
        "import sys\n"
        "from kubetrain.__main__ import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import kubetrain.handlers, kubetrain.k8s, kubetrain.podwatch\n"
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes.')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr
