"""Node agent: the IMDSv2 client (against a tiny in-process HTTP server) and the poll loop (with an
in-memory Node store that behaves like the API server: resourceVersion preconditions, 409s)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kubetrain.api import constants as c
from kubetrain.nodeagent import notices
from kubetrain.nodeagent.agent import Backoff, NodeAgent, PollError
from kubetrain.nodeagent.imds import TOKEN_HEADER, TOKEN_TTL_HEADER, ImdsClient, ImdsError
from kubetrain.nodeagent.kube import Conflict

SPOT = '{"action": "terminate", "time": "2026-11-22T05:40:00Z"}'
REBALANCE = '{"noticeTime": "2026-11-22T05:30:00Z"}'

# --- IMDSv2 client -------------------------------------------------------------------------------


class FakeImds(ThreadingHTTPServer):
    """IMDSv2-only: PUT /latest/api/token issues tokens; GETs without a current token get 401."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, tuple[int, str]] = {}
        self.valid_tokens: set[str] = set()
        self.ttl_headers: list[str] = []
        self.gets = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeImds

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        ttl = self.headers.get(TOKEN_TTL_HEADER)
        if self.path != "/latest/api/token" or ttl is None:
            return self._reply(400)
        self.server.ttl_headers.append(ttl)
        token = f"token-{len(self.server.ttl_headers)}"
        self.server.valid_tokens.add(token)
        self._reply(200, token)

    def do_GET(self) -> None:
        self.server.gets += 1
        if self.headers.get(TOKEN_HEADER) not in self.server.valid_tokens:
            return self._reply(401)
        code, body = self.server.bodies.get(self.path, (404, "not found"))
        self._reply(code, body)


@pytest.fixture
def fake_imds() -> Iterator[FakeImds]:
    server = FakeImds()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_imds_token_reused_until_near_expiry(fake_imds: FakeImds) -> None:
    fake_imds.bodies[notices.SPOT_INSTANCE_ACTION_PATH] = (200, SPOT)
    clock = Clock()
    imds = ImdsClient(fake_imds.url, token_ttl_seconds=60, clock=clock)
    for _ in range(5):
        assert imds.get(notices.SPOT_INSTANCE_ACTION_PATH) == SPOT
    assert (imds.tokens_fetched, fake_imds.ttl_headers) == (1, ["60"])
    clock.now += 60 - 15 - 0.1  # still outside the refresh margin
    imds.get(notices.SPOT_INSTANCE_ACTION_PATH)
    assert imds.tokens_fetched == 1
    clock.now += 0.2  # inside the margin: a fresh token before the old one expires
    imds.get(notices.SPOT_INSTANCE_ACTION_PATH)
    assert imds.tokens_fetched == 2


def test_imds_404_means_no_notice(fake_imds: FakeImds) -> None:
    assert ImdsClient(fake_imds.url).get(notices.REBALANCE_PATH) is None


def test_imds_revoked_token_is_replaced_once(fake_imds: FakeImds) -> None:
    fake_imds.bodies[notices.REBALANCE_PATH] = (200, REBALANCE)
    imds = ImdsClient(fake_imds.url)
    assert imds.get(notices.REBALANCE_PATH) == REBALANCE
    fake_imds.valid_tokens.clear()  # IMDS restarted / token expired server-side
    assert imds.get(notices.REBALANCE_PATH) == REBALANCE
    assert imds.tokens_fetched == 2


@pytest.mark.parametrize("code", [500, 503, 403])
def test_imds_errors_raise(fake_imds: FakeImds, code: int) -> None:
    fake_imds.bodies[notices.SPOT_INSTANCE_ACTION_PATH] = (code, "boom")
    with pytest.raises(ImdsError, match=f"HTTP {code}"):
        ImdsClient(fake_imds.url).get(notices.SPOT_INSTANCE_ACTION_PATH)


def test_imds_unreachable_raises() -> None:
    from support import free_port

    imds = ImdsClient(f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
    with pytest.raises(ImdsError, match=r"PUT http://127\.0\.0\.1"):
        imds.get(notices.SPOT_INSTANCE_ACTION_PATH)


@pytest.mark.parametrize(
    ("endpoint", "ttl", "message"),
    [
        ("169.254.169.254", 60, "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http"),
        ("http://169.254.169.254", 0, "TTL must be 1..21600"),
        ("http://169.254.169.254", 21601, "TTL must be 1..21600"),
    ],
)
def test_imds_client_rejects_bad_settings(endpoint: str, ttl: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImdsClient(endpoint, token_ttl_seconds=ttl)


# --- the poll loop ---------------------------------------------------------------------------------


class ScriptedImds(ImdsClient):
    """IMDS answers per path: a body, None (404) or an exception to raise."""

    def __init__(self) -> None:
        super().__init__("http://imds.invalid")
        self.answers: dict[str, str | Exception | None] = {}

    def get(self, path: str) -> str | None:
        answer = self.answers.get(path)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Nodes:
    """An in-memory API server for Nodes: strategic-merge of annotations, atomic taints,
    resourceVersion preconditions (409) and injectable failures."""

    def __init__(self) -> None:
        self.node: dict[str, Any] = {
            "metadata": {"name": "n1", "resourceVersion": "1", "annotations": {}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        }
        self.gets = 0
        self.patches: list[dict[str, Any]] = []
        self.fail_patches: list[Exception] = []
        self.writes_behind_our_back = 0

    def get_node(self, name: str) -> dict[str, Any]:
        self.gets += 1
        return copy.deepcopy(self.node)

    def _bump(self) -> None:
        meta = self.node["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def patch_node(self, name: str, patch: dict[str, Any]) -> None:
        if self.fail_patches:
            raise self.fail_patches.pop(0)
        if self.writes_behind_our_back:
            self.writes_behind_our_back -= 1
            self._bump()  # another controller wrote the node since our read
        meta = self.node["metadata"]
        if (
            patch["metadata"].get("resourceVersion", meta["resourceVersion"])
            != meta["resourceVersion"]
        ):
            raise Conflict("409")
        meta["annotations"].update(patch["metadata"]["annotations"])
        self.node["spec"]["taints"] = patch["spec"]["taints"]
        self.patches.append(patch)
        self._bump()

    def taint(self, key: str) -> dict[str, Any] | None:
        return next((t for t in self.node["spec"]["taints"] if t["key"] == key), None)


def _agent(imds: ScriptedImds, nodes: Nodes) -> NodeAgent:
    return NodeAgent(imds=imds, nodes=nodes, node_name="n1", interval=0.01)


def test_no_notice_touches_nothing() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    agent = _agent(imds, nodes)
    for _ in range(3):
        assert agent.poll_once() == []
    assert (nodes.gets, nodes.patches) == (0, [])


def test_spot_notice_patched_once_across_polls() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    agent = _agent(imds, nodes)
    for _ in range(5):
        agent.poll_once()
    assert (len(nodes.patches), nodes.gets, agent.patches) == (1, 1, 1)
    assert nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN) == {
        "key": c.TAINT_KUBETRAIN_SPOT_ITN,
        "value": "2026-11-22T05-40-00Z",
        "effect": "NoSchedule",
    }
    assert nodes.taint("nvidia.com/gpu") is not None
    assert json.loads(nodes.node["metadata"]["annotations"][c.ANNOTATION_NODE_SPOT_NOTICE]) == (
        json.loads(SPOT)
    )


def test_new_notice_time_is_a_new_patch_and_restart_is_not() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    _agent(imds, nodes).poll_once()
    restarted = _agent(imds, nodes)  # new process, empty memory: reads the node, patches nothing
    restarted.poll_once()
    assert (len(nodes.patches), restarted.patches) == (1, 0)
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT.replace("05:40", "05:41")
    restarted.poll_once()
    assert len(nodes.patches) == 2
    assert nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN)["value"] == "2026-11-22T05-41-00Z"  # type: ignore[index]
    assert [t["key"] for t in nodes.node["spec"]["taints"]].count(c.TAINT_KUBETRAIN_SPOT_ITN) == 1


def test_both_signals_recorded() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    imds.answers[notices.REBALANCE_PATH] = REBALANCE
    seen = _agent(imds, nodes).poll_once()
    assert [n.kind for n in seen] == ["spot", "rebalance"]
    assert nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN) is not None
    assert nodes.taint(c.TAINT_KUBETRAIN_REBALANCE) == {
        "key": c.TAINT_KUBETRAIN_REBALANCE,
        "value": "2026-11-22T05-30-00Z",
        "effect": "NoSchedule",
    }
    assert set(nodes.node["metadata"]["annotations"]) == {
        c.ANNOTATION_NODE_SPOT_NOTICE,
        c.ANNOTATION_NODE_REBALANCE_NOTICE,
    }


def test_failures_are_retried_not_lost() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = ImdsError("GET ...: timed out")
    imds.answers[notices.REBALANCE_PATH] = REBALANCE
    nodes.fail_patches = [RuntimeError("apiserver: 503")]
    agent = _agent(imds, nodes)
    with pytest.raises(PollError, match=r"timed out.*apiserver: 503"):
        agent.poll_once()
    assert nodes.patches == []
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    agent.poll_once()  # both recorded on the next poll
    assert nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN) is not None
    assert nodes.taint(c.TAINT_KUBETRAIN_REBALANCE) is not None


def test_restamped_rebalance_is_not_repatched() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    agent = _agent(imds, nodes)
    for second in range(10, 15):  # IMDS (AEMM) stamps noticeTime with the request time
        imds.answers[notices.REBALANCE_PATH] = f'{{"noticeTime": "2026-11-22T05:30:{second}Z"}}'
        agent.poll_once()
        _agent(imds, nodes).poll_once()  # nor after a restart
    assert len(nodes.patches) == 1
    assert nodes.taint(c.TAINT_KUBETRAIN_REBALANCE)["value"] == "2026-11-22T05-30-10Z"  # type: ignore[index]


def test_malformed_notice_does_not_hide_the_other() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = "<html>oops</html>"
    imds.answers[notices.REBALANCE_PATH] = REBALANCE
    with pytest.raises(PollError, match="spot/instance-action: body is not JSON"):
        _agent(imds, nodes).poll_once()
    assert nodes.taint(c.TAINT_KUBETRAIN_REBALANCE) is not None


@pytest.mark.parametrize(("concurrent_writes", "recorded"), [(1, True), (4, True), (5, False)])
def test_conflicts_reread_the_node(concurrent_writes: int, recorded: bool) -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    nodes.writes_behind_our_back = concurrent_writes
    agent = _agent(imds, nodes)
    if recorded:
        agent.poll_once()
    else:
        with pytest.raises(PollError, match="kept changing"):
            agent.poll_once()
    assert (nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN) is not None) is recorded
    assert nodes.gets == min(concurrent_writes + 1, 5)


@pytest.mark.parametrize(
    ("base", "failures", "delay"),
    [(1.0, 0, 1.0), (1.0, 1, 2.0), (1.0, 3, 8.0), (1.0, 10, 30.0), (0.1, 0, 0.1), (0.1, 2, 0.4)],
)
def test_backoff(base: float, failures: int, delay: float) -> None:
    assert Backoff(base=base, failures=failures).delay == delay


def test_run_stops_on_event_and_keeps_polling_through_errors() -> None:
    imds, nodes = ScriptedImds(), Nodes()
    imds.answers[notices.SPOT_INSTANCE_ACTION_PATH] = SPOT
    nodes.fail_patches = [RuntimeError("apiserver down")]
    agent = NodeAgent(imds=imds, nodes=nodes, node_name="n1", interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    from support import wait_for

    # The first patch fails; the loop backs off and records the notice on a later poll.
    wait_for(lambda: nodes.taint(c.TAINT_KUBETRAIN_SPOT_ITN), timeout=10, what="spot taint")
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert agent.patches == 1
