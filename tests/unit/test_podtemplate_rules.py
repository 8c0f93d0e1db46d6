"""podTemplate ownership (api/podtemplate.py), error surfacing helpers (surface.py) and the README's
list of refused podTemplate fields, which must name everything the code refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain import surface
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.api.podtemplate import (
    DISRUPTION_TAINT_PREFIXES,
    DISRUPTION_TAINTS,
    OPERATOR_FIELDS,
    PRIVILEGED_POD_FIELDS,
    RESERVED_ENV,
    RESERVED_ENV_PREFIXES,
    RESERVED_VOLUMES,
    check_pod_template,
)
from kubetrain.build import JobRef, build_pod, resolve
from kubetrain.config import ENV_ALLOW_PRIVILEGED_PODS, operator_config
from kubetrain.k8s import KubeError, api_message

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "image": "r.example/t:1",
    "command": ["python", "t.py"],
    "resources": {"cpu": "1", "memory": "1Gi"},
}
PRIVILEGED = {
    "spec": {
        "hostNetwork": True,
        "containers": [{"name": "worker", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
}


def test_readme_lists_every_refused_field() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### What `podTemplate` may change", 1)[1].split("\n## ", 1)[0]
    names = [
        *(f for f, _ in OPERATOR_FIELDS),
        *RESERVED_ENV,
        *(p + "*" for p in RESERVED_ENV_PREFIXES),
        *DISRUPTION_TAINTS,
        *(p + "*" for p in DISRUPTION_TAINT_PREFIXES),
        *RESERVED_VOLUMES,
        *PRIVILEGED_POD_FIELDS,
        "securityContext.privileged",
        "hostPath",
        "hostPort",
        "capabilities.add",
        "allowPrivilegeEscalation",
        ENV_ALLOW_PRIVILEGED_PODS,
    ]
    missing = [n for n in names if f"`{n}" not in section]
    assert not missing, f"README's podTemplate section does not mention {missing}"


def test_privileged_template_refused_by_default_and_allowed_by_configuration() -> None:
    with pytest.raises(InvalidSpec) as info:
        TrainingJobSpec.parse({**BASE, "podTemplate": PRIVILEGED})
    assert info.value.field == "spec.podTemplate.spec.hostNetwork"
    spec = TrainingJobSpec.parse({**BASE, "podTemplate": PRIVILEGED}, allow_privileged=True)
    pod = build_pod(JobRef("j", "ns", "u"), resolve(spec), 1, 0)
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["containers"][0]["securityContext"] == {"privileged": True}
    # Allowed privilege never unlocks the operator's own fields.
    with pytest.raises(InvalidSpec):
        TrainingJobSpec.parse(
            {**BASE, "podTemplate": {"spec": {"serviceAccountName": "default"}}},
            allow_privileged=True,
        )


def test_operator_config_reads_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ALLOW_PRIVILEGED_PODS, raising=False)
    assert not operator_config().allow_privileged_pods
    monkeypatch.setenv(ENV_ALLOW_PRIVILEGED_PODS, "true")
    assert operator_config().allow_privileged_pods
    monkeypatch.setenv(ENV_ALLOW_PRIVILEGED_PODS, "no")
    assert not operator_config().allow_privileged_pods


@pytest.mark.parametrize(
    "template",
    [
        {"metadata": {"labels": {"team": "ml"}}},
        {"spec": {"containers": [{"name": "worker", "env": [{"name": "HF_HOME", "value": "/x"}]}]}},
        {"spec": {"tolerations": [{"key": "team", "operator": "Exists"}]}},
        {"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}},
        {
            "spec": {
                "containers": [
                    {"name": "side", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
                ]
            }
        },
    ],
)
def test_the_users_fields_pass(template: dict[str, Any]) -> None:
    check_pod_template(template)


def test_backoff_doubles_to_five_minutes() -> None:
    assert [surface.backoff(n) for n in (1, 2, 3, 4, 10, 100)] == [5, 10, 20, 40, 300, 300]


def test_rejection_is_only_an_invalid_create() -> None:
    assert surface.is_rejection(KubeError("POST", "/api/v1/namespaces/n/pods", 422, "Invalid"))
    assert surface.is_rejection(KubeError("POST", "/api/v1/namespaces/n/pods", 400, "Bad"))
    assert not surface.is_rejection(KubeError("POST", "/p", 403, "Forbidden"))  # quota: transient
    assert not surface.is_rejection(KubeError("PATCH", "/p", 422, "Invalid"))
    assert not surface.is_rejection(ValueError("x"))


def test_api_message_is_the_status_message() -> None:
    body = '{"kind":"Status","message":"Pod \\"j-1-0\\" is invalid: spec.containers[1].image: Required value","code":422}'
    assert api_message(body) == 'Pod "j-1-0" is invalid: spec.containers[1].image: Required value'
    assert api_message(b"not json") == "not json"
    assert api_message(None) == ""
    err = KubeError("POST", "/p", 422, "Unprocessable Entity", "spec.x: Required value")
    assert "spec.x: Required value" in str(err) and err.message == "spec.x: Required value"


def _job(generation: int, failed: dict[str, Any] | None) -> dict[str, Any]:
    conditions = [failed] if failed else []
    return {"metadata": {"generation": generation}, "status": {"conditions": conditions}}


def test_rejected_this_generation_only_for_the_rejected_spec() -> None:
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "InvalidSpec",
        "message": f"spec.podTemplate: {surface.REJECTED_PREFIX} an object built from this spec",
        "observedGeneration": 3,
    }
    assert surface.rejected_this_generation(_job(3, failed))
    assert not surface.rejected_this_generation(_job(4, failed))  # the user changed the spec
    assert not surface.rejected_this_generation(_job(3, {**failed, "message": "spec.nodes: ..."}))
    assert not surface.rejected_this_generation(_job(3, None))


@pytest.mark.parametrize(
    ("spec", "warn"),
    [
        ({"capacity": {"type": "spot"}}, True),
        ({"capacity": {"type": "spot-then-on-demand"}}, True),
        ({"capacity": {"type": "spot"}, "checkpoint": {"s3Uri": "s3://b/x"}}, False),
        ({"capacity": {"type": "spot"}, "storage": {"fsx": {"claimName": "f"}}}, False),
        ({"capacity": {"type": "spot"}, "checkpoint": {"dir": "/scratch/c"}}, False),
        ({"capacity": {"type": "on-demand"}}, False),
        ({}, False),
    ],
)
def test_spot_without_durable_checkpoint(spec: dict[str, Any], warn: bool) -> None:
    assert surface.spot_without_durable_checkpoint(spec) is warn


def test_examples_are_the_users_templates() -> None:
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        check_pod_template(doc["spec"].get("podTemplate"))


def test_admission_policy_covers_every_privileged_field_and_is_committed() -> None:
    """The generated ValidatingAdmissionPolicy names each field the operator gates, takes no
    parameters (a ConfigMap paramKind can silently stop being read), and the chart's
    templates/admission.yaml is its current rendering."""
    import importlib.util

    from kubetrain.api.admission import CONFIG_KEY, config_map, policy

    assert config_map()["data"] == {CONFIG_KEY: "false"}
    vap, binding = policy()
    assert "paramKind" not in vap["spec"] and "paramRef" not in binding["spec"]
    messages = " ".join(v["message"] for v in vap["spec"]["validations"])
    for field in [
        *PRIVILEGED_POD_FIELDS,
        "volumes[].hostPath",
        "containers[].securityContext.privileged",
        "initContainers[].securityContext.privileged",
        "containers[].securityContext.capabilities.add",
        "containers[].securityContext.allowPrivilegeEscalation",
        "containers[].ports[].hostPort",
    ]:
        assert f"spec.podTemplate.spec.{field}" in messages, field
    assert all(v["expression"].startswith("!object.spec.") for v in vap["spec"]["validations"])
    spec = importlib.util.spec_from_file_location("gen_crd", ROOT / "hack" / "gen_crd.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    chart = ROOT / "manifests" / "charts" / "kubetrain" / "templates" / "admission.yaml"
    assert chart.read_text() == gen.render_admission()


def test_instance_rules_in_the_crd_cover_every_profile() -> None:
    """The CRD's instance-type rules are generated from profiles.py: every known type, with its
    accelerators, EFA count, vCPUs and memory, is in the committed CRD (drift otherwise)."""
    from kubetrain.api.rules import instance_rules
    from kubetrain.profiles import PROFILES

    crd = yaml.safe_load((ROOT / "crds" / "trainingjob.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    committed = spec["x-kubernetes-validations"]
    for rule in instance_rules():
        assert rule in committed, rule["fieldPath"]
    text = " ".join(r["rule"] for r in instance_rules())
    for name, p in PROFILES.items():
        assert f"'{name}': {p.accelerators}" in text
        assert f"'{name}': {p.efa_interfaces}" in text
        assert f"'{name}': '{p.vcpu}'" in text
        assert f"'{name}': '{p.memory_gib}Gi'" in text


@pytest.mark.parametrize(
    "template",
    [
        {"spec": {"volumes": None}},
        {"spec": {"tolerations": None}},
        {"spec": {"containers": [{"name": "worker", "resources": None, "env": None}]}},
        {"spec": {"initContainers": None, "affinity": None}},
    ],
)
def test_null_in_the_template_never_removes_the_operators_values(template: dict[str, Any]) -> None:
    """Found by the property test: nulls replaced the operator's volumes, tolerations and the
    worker's resources (a BestEffort pod without /dev/shm)."""
    spec = TrainingJobSpec.parse(
        {
            **BASE,
            "accelerator": {"kind": "nvidia", "instanceType": "g5.xlarge"},
            "podTemplate": template,
        }
    )
    pod = build_pod(JobRef("j", "ns", "u"), resolve(spec), 1, 0)
    worker = pod["spec"]["containers"][0]
    assert worker["resources"]["requests"]["cpu"] and worker["env"]
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"dshm"}
    assert pod["spec"]["tolerations"]
    assert None not in pod["spec"].values()


@pytest.mark.parametrize("allow_privileged", [False, True])
def test_a_security_context_that_is_not_an_object_is_refused_by_field(
    allow_privileged: bool,
) -> None:
    """Found by the property test: a string securityContext got past parsing into the builder."""
    raw = {**BASE, "podTemplate": {"spec": {"containers": [{"name": "w", "securityContext": "0"}]}}}
    with pytest.raises(InvalidSpec) as err:
        TrainingJobSpec.parse(raw, allow_privileged=allow_privileged)
    assert err.value.field == "spec.podTemplate.spec.containers[0].securityContext"
    assert "must be an object" in err.value.message
