"""`kubetrain-operator` / `python -m kubetrain`: what reaches `kopf run`, and our own options."""

from __future__ import annotations

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
def test_kopf_arguments(argv: list[str], expected: list[str]) -> None:
    assert cli.kopf_args(argv) == expected


def test_metrics_address_is_ours_not_kopfs(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so that monkeypatch restores the variable's absence afterwards (kopf_args sets
    # it in os.environ; a leak would make later in-process operators serve metrics).
    monkeypatch.setenv(cli.METRICS_ADDRESS_ENV, "unset")
    monkeypatch.delenv(cli.METRICS_ADDRESS_ENV)
    args = cli.kopf_args(["--metrics-address=0.0.0.0:8081", "--standalone"])
    assert args == ["run", "--all-namespaces", "-m", cli.HANDLERS_MODULE, "--standalone"]
    import os

    assert os.environ[cli.METRICS_ADDRESS_ENV] == "0.0.0.0:8081"


def test_chart_app_version_is_the_package_version() -> None:
    import yaml

    chart = yaml.safe_load((ROOT / "manifests" / "charts" / "kubetrain" / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
