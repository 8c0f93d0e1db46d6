"""kubetrain.k8s reads its credentials as kopf does, once however many requests start together,
and again after TOKEN_REFRESH_SECONDS (a projected service-account token rotates)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kopf
import pytest
import yaml

from kubetrain import k8s
from kubetrain.k8s import Kube


def test_a_hundred_requests_at_start_read_the_credentials_once_then_again_when_stale() -> None:
    reads: list[str] = []
    clock = [1000.0]

    def credentials() -> kopf.ConnectionInfo:
        reads.append("read")
        return kopf.ConnectionInfo(server="https://api.example:6443", token=f"t{len(reads)}")

    kube = Kube(credentials, clock=lambda: clock[0])

    async def scenario() -> list[kopf.ConnectionInfo]:
        first = await asyncio.gather(*(kube._connection() for _ in range(100)))
        clock[0] += k8s.TOKEN_REFRESH_SECONDS
        return [*first, await kube._connection()]

    infos = asyncio.run(scenario())
    assert len(reads) == 2
    assert {i.token for i in infos[:100]} == {"t1"} and infos[100].token == "t2"


def test_login_reads_the_kubeconfig_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "secret"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    info = k8s.login()
    assert (info.server, info.as_http_headers()) == (
        "https://127.0.0.1:6443",
        {"Authorization": "Bearer secret"},
    )
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    with pytest.raises(kopf.LoginError, match="point \\$KUBECONFIG at a kubeconfig"):
        k8s.login()
