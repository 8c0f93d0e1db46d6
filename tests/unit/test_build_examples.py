"""Golden whole-object comparison of build_attempt for the shipped examples.

UPDATE_GOLDEN=1 rewrites tests/unit/golden/*.yaml; review the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import JobRef, Placement, build_attempt, resolve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
GOLDEN = Path(__file__).parent / "golden"
UID = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RESUME = "/fsx/checkpoints/llama-fsdp/manifests/step-000000012000-3f9a.json"

CASES: list[tuple[str, int, str | None, Placement | None]] = [
    ("p5-fsdp-spot", 1, None, None),
    ("p5-fsdp-spot", 3, RESUME, Placement(zone="us-west-2b")),
    ("trn1-neuron", 1, None, None),
    ("g5-single-node", 1, None, None),
]


def build(
    example: str, attempt: int, resume: str | None, placement: Placement | None
) -> list[dict[str, Any]]:
    doc = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    job = JobRef(name=doc["metadata"]["name"], namespace="ml", uid=UID)
    spec = TrainingJobSpec.parse(doc["spec"])
    return build_attempt(job, resolve(spec), attempt, resume_manifest=resume, placement=placement)


def _dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=100)


@pytest.mark.parametrize(
    ("example", "attempt", "resume", "placement"),
    CASES,
    ids=[f"{c[0]}-attempt{c[1]}" for c in CASES],
)
def test_golden(
    example: str, attempt: int, resume: str | None, placement: Placement | None
) -> None:
    golden = GOLDEN / f"{example}-attempt{attempt}.yaml"
    text = _dump(build(example, attempt, resume, placement))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    want = golden.read_text()
    if text != want:
        diff = "".join(
            difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "built")
        )
        pytest.fail(f"{golden.name} differs (UPDATE_GOLDEN=1 to accept):\n{diff}")
    assert list(yaml.safe_load_all(want)) == build(example, attempt, resume, placement)


def test_builders_are_deterministic() -> None:
    for example, attempt, resume, placement in CASES:
        assert build(example, attempt, resume, placement) == build(
            example, attempt, resume, placement
        )
