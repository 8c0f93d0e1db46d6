"""crds/trainingjob.yaml is generated from the models; this fails when it is stale or malformed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubetrain.api.crd import render

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjob.yaml"


def test_committed_crd_matches_generator() -> None:
    assert CRD.read_text() == render(), (
        "crds/trainingjob.yaml is stale: run `python hack/gen_crd.py`"
    )


def test_gen_crd_check_reports_drift(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "hack/gen_crd.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for name, sub in (node.get("properties") or {}).items():
            out += _walk(sub, f"{path}.{name}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
    return out


def test_schema_is_structural() -> None:
    doc = yaml.safe_load(CRD.read_text())
    version = doc["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for banned in (
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "title",
            "$defs",
            "const",
        ):
            assert banned not in node, f"{path} has {banned}"
        # Typed maps (podTemplate labels) are structural; `additionalProperties: true/false` is not.
        assert isinstance(node.get("additionalProperties", {}), dict), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert node.get("default", 0) is not None, f"{path} defaults to null"
    assert version["subresources"] == {"status": {}}
    assert doc["spec"]["names"]["shortNames"] == ["tj"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Ready", "Attempt", "Restarts", "Checkpoint", "Age"]
    spec = schema["properties"]["spec"]["properties"]
    # podTemplate: typed where a rule reads it, everything else of the pod spec kept as written.
    assert spec["podTemplate"]["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["efa"]["properties"]["interfaces"]["x-kubernetes-int-or-string"] is True


def test_every_rule_message_names_a_field() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [r for _, node in _walk(schema) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 25
    for rule in rules:
        assert rule["message"].startswith(("spec.", "metadata.")), rule
        # CEL string literals reject "\\." escapes; patterns use [.] instead.
        assert "\\" not in rule["rule"], rule
        assert ":" in rule["message"] or "must" in rule["message"], rule


def test_printer_column_paths_exist_in_schema() -> None:
    version = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    paths = {p for p, _ in _walk(schema)}
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata"):
            continue
        assert column["jsonPath"] in paths, column
