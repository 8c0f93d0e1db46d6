"""kopf's per-event "Handler ... succeeded." lines are dropped; everything else is kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kopf
import pytest
from kopf._core.actions.loggers import LocalObjectLogger, ObjectLogger

from kubetrain.handlers import quiet_handler_success

BODY = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}})


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def captured() -> Iterator[Capture]:
    logger = logging.getLogger("kopf.objects")
    capture = Capture()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    logger.addFilter(quiet_handler_success)
    try:
        yield capture
    finally:
        logger.removeFilter(quiet_handler_success)
        logger.removeHandler(capture)
        logger.setLevel(old_level)


def test_kopf_success_lines_go_and_everything_else_stays(captured: Capture) -> None:
    settings = kopf.OperatorSettings()
    local = LocalObjectLogger(body=BODY, settings=settings)
    ours = ObjectLogger(body=BODY, settings=settings)
    local.info("Handler 'wake_on_pod' succeeded.")  # what kopf logs per event
    local.error("Handler 'wake_on_pod' failed with an exception. Will ignore.")
    ours.info("Handler 'x' succeeded.")  # a line of ours that happens to read the same
    ours.info("deleted pod j-1-0 (grace 5s)")
    assert captured.messages == [
        "Handler 'wake_on_pod' failed with an exception. Will ignore.",
        "Handler 'x' succeeded.",
        "deleted pod j-1-0 (grace 5s)",
    ]
