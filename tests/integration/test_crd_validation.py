"""The generated CRD on a real API server: bad specs are rejected at apply time with messages that
name the field; good ones are stored with defaults the operator's parser accepts; status written
from TrainingJobStatus survives pruning and feeds the printer columns."""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster
from kubetrain.api import constants as c
from kubetrain.api.models import TrainingJobSpec, TrainingJobStatus
from support import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjob.yaml"
GOLDEN = ROOT / "tests" / "unit" / "golden"
INVALID = yaml.safe_load((GOLDEN / "invalid_specs.yaml").read_text())
UNRUNNABLE = yaml.safe_load((GOLDEN / "unrunnable_specs.yaml").read_text())
APISERVER_CASES = [
    x for x in INVALID["cases"] if "apiserver" in x.get("layers", ["parse", "apiserver"])
]


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Any:
    return cluster.api_client()


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster, api: Any) -> str:
    """Install (or update to) the committed CRD and wait until the API server serves it."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD.read_text())
    name = body["metadata"]["name"]
    try:
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        ext.create_custom_resource_definition(body)

    def established() -> bool:
        conds = ext.read_custom_resource_definition(name).status.conditions or []
        return any(x.type == "Established" and x.status == "True" for x in conds)

    wait_for(established, timeout=60, what=f"CRD {name} Established")
    return name


@pytest.fixture(scope="module")
def ns(cluster: Cluster, crd_installed: str) -> Iterator[str]:
    name = f"crd-validation-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _create(api: Any, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    body = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.PLURAL, body, field_validation="Strict"
    )
    return created


@pytest.mark.parametrize("case", APISERVER_CASES, ids=[x["name"] for x in APISERVER_CASES])
def test_invalid_spec_rejected_naming_the_field(api: Any, ns: str, case: dict[str, Any]) -> None:
    from kubernetes import client

    spec = _deep_merge(INVALID["base"], case.get("spec", {}))
    for key in case.get("remove", []):
        spec.pop(key)
    name = case.get("metadataName", case["name"])
    with pytest.raises(client.ApiException) as info:
        _create(api, ns, name, spec)
    assert info.value.status in (400, 422), info.value.body
    message = json.loads(info.value.body)["message"]
    # Rule messages write list items as "spec.env[]"; the server's own prefix has the index.
    field = re.sub(r"\[\d+\]", "[]", case["field"])
    assert field in message.replace("[0]", "[]").replace("[1]", "[]"), message


@pytest.mark.parametrize(
    "path", sorted((ROOT / "manifests" / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_are_accepted_with_defaults(api: Any, ns: str, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    stored = _create(api, ns, doc["metadata"]["name"], doc["spec"])["spec"]
    assert stored["failurePolicy"]["maxInterruptions"] == doc["spec"].get("failurePolicy", {}).get(
        "maxInterruptions", 20
    )
    assert stored["terminationGracePeriodSeconds"] == 115
    assert stored["checkpointDeadlineSeconds"] == 90
    assert stored["efa"]["interfaces"] == "auto"
    assert TrainingJobSpec.parse(stored) == TrainingJobSpec.parse(doc["spec"])


@pytest.mark.parametrize("case", UNRUNNABLE["cases"], ids=[x["name"] for x in UNRUNNABLE["cases"]])
def test_unrunnable_specs_at_apply_or_for_the_operator(
    api: Any, ns: str, case: dict[str, Any]
) -> None:
    """Instance facts the CRD knows (profiles.py, generated into CEL) refuse at apply naming the
    field; the rest (unknown instance types) are for the operator to fail with InvalidSpec."""
    from kubernetes import client

    spec = _deep_merge(UNRUNNABLE["base"], case["spec"])
    name = f"unrunnable-{case['name']}"[:52].rstrip("-")
    if not case.get("atApply"):
        assert _create(api, ns, name, spec)["metadata"]["uid"]
        return
    with pytest.raises(client.ApiException) as info:
        _create(api, ns, name, spec)
    assert info.value.status in (400, 422), info.value.body
    assert case["field"] in json.loads(info.value.body)["message"]


def test_status_round_trip_and_printer_columns(cluster: Cluster, api: Any, ns: str) -> None:
    from kubernetes import client

    _create(api, ns, "status-demo", dict(INVALID["base"]))
    status = TrainingJobStatus.model_validate(
        {
            "phase": "Running",
            "observedGeneration": 1,
            "attempt": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AllRanksRunning",
                    "lastTransitionTime": "2025-01-02T03:04:05Z",
                    "observedGeneration": 1,
                }
            ],
            "nodes": {"ready": 3, "total": 4},
            "restarts": {"failures": 1, "interruptions": 2},
            "checkpoint": {
                "id": "a1",
                "step": 12000,
                "uri": "/fsx/c/manifests/step-000000012000-a1.json",
                "kind": "emergency",
                "committedAt": "2025-01-02T03:04:05Z",
            },
            "interruptions": [
                {
                    "node": "ip-10-0-1-2",
                    "source": "nth",
                    "reason": "spot-interruption",
                    "detectedAt": "2025-01-02T03:00:00Z",
                    "checkpointStep": 12000,
                    "lostSteps": 0,
                    "attempt": 2,
                }
            ],
            "startTime": "2025-01-02T01:00:00Z",
            "attemptStartTime": "2025-01-02T03:05:00Z",
            "zone": "us-west-2b",
            "resumeManifest": "/fsx/c/manifests/step-000000012000-a1.json",
            "message": "resumed from step 12000",
        }
    )
    body = {"status": status.model_dump(by_alias=True, exclude_none=True)}
    objects = client.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, ns, c.PLURAL, "status-demo", body
    )
    stored = objects.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, "status-demo")
    assert stored["status"] == body["status"], "the CRD pruned or changed status fields"
    assert TrainingJobStatus.model_validate(stored["status"]) == status
    table = cluster.kubectl("get", "tj", "status-demo", "-n", ns).stdout.split("\n")
    header, row = table[0].split(), table[1].split()
    assert header == ["NAME", "PHASE", "READY", "ATTEMPT", "RESTARTS", "CHECKPOINT", "AGE"]
    assert row[:6] == ["status-demo", "Running", "3/4", "3", "3", "12000"]
