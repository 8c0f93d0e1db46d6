"""TrainingJobSpec parsing: defaults, aliases, and invalid specs rejected with the field named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kubetrain.api.models import (
    InvalidSpec,
    TrainingJobSpec,
    TrainingJobStatus,
    printer_fields,
    validate_job_name,
)

ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((Path(__file__).parent / "golden" / "invalid_specs.yaml").read_text())


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _case_spec(case: dict[str, Any]) -> dict[str, Any]:
    spec = _deep_merge(TABLE["base"], case.get("spec", {}))
    for key in case.get("remove", []):
        spec.pop(key)
    return spec


PARSE_CASES = [c for c in TABLE["cases"] if "parse" in c.get("layers", ["parse", "apiserver"])]


def test_table_is_large_and_distinct() -> None:
    names = [c["name"] for c in TABLE["cases"]]
    assert len(names) == len(set(names))
    assert len({c["field"] for c in TABLE["cases"]}) >= 12


@pytest.mark.parametrize("case", PARSE_CASES, ids=[c["name"] for c in PARSE_CASES])
def test_invalid_spec_names_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpec) as info:
        if "metadataName" in case:
            TrainingJobSpec.parse(_case_spec(case))  # the spec itself is fine
            validate_job_name(case["metadataName"])
        else:
            TrainingJobSpec.parse(_case_spec(case))
    assert info.value.field == case["field"]
    assert case["field"] in info.value.message
    assert str(info.value) == info.value.message


def test_base_spec_is_valid_and_defaulted() -> None:
    spec = TrainingJobSpec.parse(TABLE["base"])
    assert spec.launcher == "torchrun"
    assert spec.nodes == 1
    assert spec.accelerator.kind == "none"
    assert spec.efa.interfaces == "auto"
    assert spec.capacity.type == "any"
    assert spec.failure_policy.max_restarts == 3
    assert spec.failure_policy.max_interruptions == 20
    assert spec.termination_grace_period_seconds == 115
    assert spec.checkpoint_deadline_seconds == 90
    assert spec.checkpoint.keep == 3


@pytest.mark.parametrize(
    "path", sorted((ROOT / "manifests" / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_parse_and_round_trip(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())["spec"]
    spec = TrainingJobSpec.parse(raw)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert TrainingJobSpec.parse(dumped) == spec
    # camelCase on the wire: what the user wrote comes back under the same keys.
    for key in raw:
        assert key in dumped


def test_quantities_accept_integers_and_normalise_to_strings() -> None:
    spec = TrainingJobSpec.parse({**TABLE["base"], "resources": {"cpu": 8, "memory": "64Gi"}})
    assert spec.resources.cpu == "8"
    assert spec.resources.memory == "64Gi"


def test_snake_case_names_also_accepted() -> None:
    spec = TrainingJobSpec.model_validate({**TABLE["base"], "failure_policy": {"max_restarts": 7}})
    assert spec.failure_policy.max_restarts == 7


def test_models_are_frozen() -> None:
    spec = TrainingJobSpec.parse(TABLE["base"])
    with pytest.raises(ValidationError):
        spec.nodes = 3  # type: ignore[misc]


def test_status_dump_has_printer_fields_and_parses_back() -> None:
    status = TrainingJobStatus.model_validate(
        {
            "phase": "Running",
            "attempt": 3,
            "nodes": {"ready": 3, "total": 4},
            "restarts": {"failures": 1, "interruptions": 2},
            "checkpoint": {"step": 1200, "uri": "/fsx/c/manifests/x.json", "kind": "emergency"},
        }
    )
    dumped = status.model_dump(by_alias=True, exclude_none=True)
    assert dumped["nodesReady"] == "3/4"
    assert dumped["restarts"]["total"] == 3
    assert dumped["attempt"] == 3
    # what the API server hands back (including computed fields) parses again
    assert TrainingJobStatus.model_validate(dumped) == status


def test_printer_fields_for_dict_writers() -> None:
    fields = printer_fields({"nodes": {"ready": 1, "total": 2}, "restarts": {"failures": 2}})
    assert fields == {"nodesReady": "1/2", "restarts": {"failures": 2, "total": 2}}
    assert printer_fields({}) == {"nodesReady": "0/0", "restarts": {"total": 0}}


@pytest.mark.parametrize("name", ["a", "llama-fsdp", "x" * 52])
def test_valid_job_names(name: str) -> None:
    validate_job_name(name)
