"""Node agent, pure parts: IMDS notice parsing, taint values, and the Node patch (table-driven)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetrain.api import constants as c
from kubetrain.nodeagent import notices
from kubetrain.nodeagent.notices import Notice, NoticeError

SPOT = '{"action": "terminate", "time": "2026-11-22T05:40:00Z"}'


@pytest.mark.parametrize(
    ("body", "action", "time"),
    [
        (SPOT, "terminate", "2026-11-22T05:40:00Z"),
        ('{"action":"stop","time":"2020-04-24T17:11:44Z"}', "stop", "2020-04-24T17:11:44Z"),
        (
            '{\n\t"action": "hibernate",\n\t"time": "2020-04-24T17:11:44+00:00"\n}',
            "hibernate",
            "2020-04-24T17:11:44+00:00",
        ),
    ],
)
def test_parse_instance_action(body: str, action: str, time: str) -> None:
    notice = notices.parse_instance_action(body)
    assert notice == Notice(
        kind="spot",
        taint_key=c.TAINT_KUBETRAIN_SPOT_ITN,
        annotation_key=c.ANNOTATION_NODE_SPOT_NOTICE,
        time=time,
        body=json.dumps({"action": action, "time": time}, sort_keys=True, separators=(",", ":")),
        action=action,
    )
    assert notice.key == ("spot", time, action)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>404</html>", "body is not JSON"),
        ('["terminate"]', "must be a JSON object"),
        ('{"time": "2026-11-22T05:40:00Z"}', "field 'action' must be one of"),
        ('{"action": "reboot", "time": "2026-11-22T05:40:00Z"}', "field 'action' must be one of"),
        ('{"action": "terminate"}', "field 'time' must be an RFC 3339 string"),
        ('{"action": "terminate", "time": "in two minutes"}', "field 'time' is not RFC 3339"),
    ],
)
def test_parse_instance_action_rejects(body: str, message: str) -> None:
    with pytest.raises(NoticeError, match=message) as info:
        notices.parse_instance_action(body)
    assert notices.SPOT_INSTANCE_ACTION_PATH in str(info.value)


@pytest.mark.parametrize(
    ("body", "result"),
    [
        ('{"noticeTime": "2020-10-27T08:22:00Z"}', "2020-10-27T08:22:00Z"),
        ('{"noticeTime": 5}', NoticeError),
        ("{}", NoticeError),
        ("null", NoticeError),
    ],
)
def test_parse_rebalance(body: str, result: str | type[Exception]) -> None:
    if isinstance(result, str):
        notice = notices.parse_rebalance(body)
        assert (notice.kind, notice.time, notice.action) == ("rebalance", result, None)
        assert notice.taint_key == c.TAINT_KUBETRAIN_REBALANCE
        assert notice.annotation_key == c.ANNOTATION_NODE_REBALANCE_NOTICE
        assert json.loads(notice.body) == {"noticeTime": result}
        assert notice.key == ("rebalance", None, None)  # a restamped noticeTime is not new
    else:
        with pytest.raises(result, match="recommendations/rebalance: "):
            notices.parse_rebalance(body)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-11-22T05:40:00Z", "2026-11-22T05-40-00Z"),
        ("2026-11-22T05:40:00+00:00", "2026-11-22T05-40-00-00-00"),
        ("2026-11-22T05:40:00.123Z", "2026-11-22T05-40-00.123Z"),
        ("  odd/value!  ", "odd-value"),
        ("x" * 80, "x" * 63),
        ("a" * 62 + ":b", "a" * 62),  # truncation must not leave a trailing '-'
        ("", ""),
    ],
)
def test_label_value(text: str, value: str) -> None:
    assert notices.label_value(text) == value
    assert len(value) <= 63


def _node(
    taints: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    rv: str | None = "42",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p5-spot-b1", "annotations": annotations or {}}
    if rv:
        metadata["resourceVersion"] = rv
    return {"metadata": metadata, "spec": {"taints": taints} if taints is not None else {}}


GPU = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
SPOT_NOTICE = notices.parse_instance_action(SPOT)
OURS = {"key": c.TAINT_KUBETRAIN_SPOT_ITN, "value": "2026-11-22T05-40-00Z", "effect": "NoSchedule"}
ANN = {c.ANNOTATION_NODE_SPOT_NOTICE: SPOT_NOTICE.body}


@pytest.mark.parametrize(
    ("node", "patch"),
    [
        pytest.param(
            _node(),
            {"metadata": {"annotations": ANN, "resourceVersion": "42"}, "spec": {"taints": [OURS]}},
            id="untainted",
        ),
        pytest.param(
            _node(taints=[GPU]),
            {
                "metadata": {"annotations": ANN, "resourceVersion": "42"},
                "spec": {"taints": [GPU, OURS]},
            },
            id="keeps-others-taints",
        ),
        pytest.param(
            _node(taints=[{**OURS, "value": "2026-11-22T05-38-00Z"}, GPU], annotations=ANN),
            {
                "metadata": {"annotations": ANN, "resourceVersion": "42"},
                "spec": {"taints": [GPU, OURS]},
            },
            id="replaces-stale-value",
        ),
        pytest.param(
            _node(taints=[GPU, OURS]),
            {
                "metadata": {"annotations": ANN, "resourceVersion": "42"},
                "spec": {"taints": [GPU, OURS]},
            },
            id="annotation-missing",
        ),
        pytest.param(
            _node(rv=None),
            {"metadata": {"annotations": ANN}, "spec": {"taints": [OURS]}},
            id="no-resource-version",
        ),
        pytest.param(_node(taints=[GPU, OURS], annotations=ANN), None, id="already-recorded"),
    ],
)
def test_node_patch(node: dict[str, Any], patch: dict[str, Any] | None) -> None:
    assert notices.node_patch(node, SPOT_NOTICE) == patch


def test_rebalance_patch_leaves_spot_taint() -> None:
    rebalance = notices.parse_rebalance('{"noticeTime": "2026-11-22T05:30:00Z"}')
    patch = notices.node_patch(_node(taints=[OURS], annotations=ANN), rebalance)
    assert patch == {
        "metadata": {
            "annotations": {c.ANNOTATION_NODE_REBALANCE_NOTICE: rebalance.body},
            "resourceVersion": "42",
        },
        "spec": {
            "taints": [
                OURS,
                {
                    "key": c.TAINT_KUBETRAIN_REBALANCE,
                    "value": "2026-11-22T05-30-00Z",
                    "effect": "NoSchedule",
                },
            ]
        },
    }


REB = notices.parse_rebalance('{"noticeTime": "2026-11-22T05:30:00Z"}')
REB_TAINT = {
    "key": c.TAINT_KUBETRAIN_REBALANCE,
    "value": "2026-11-22T05-29-00Z",
    "effect": "NoSchedule",
}
REB_ANN = {c.ANNOTATION_NODE_REBALANCE_NOTICE: '{"noticeTime":"2026-11-22T05:29:00Z"}'}


@pytest.mark.parametrize(
    ("node", "patched"),
    [
        pytest.param(_node(taints=[REB_TAINT], annotations=REB_ANN), False, id="earlier-stands"),
        pytest.param(_node(taints=[REB_TAINT]), True, id="annotation-missing"),
        pytest.param(_node(annotations=REB_ANN), True, id="taint-missing"),
    ],
)
def test_rebalance_recorded_once(node: dict[str, Any], patched: bool) -> None:
    assert (notices.node_patch(node, REB) is not None) is patched
