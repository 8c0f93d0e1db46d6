"""Native gang scheduling in the builders: one PodGroup per attempt, before its pods, every pod
linked to it; nothing of it in the operator's own mode."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrain.api import constants as c
from kubetrain.api.constants import GangScheduling
from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import (
    JobRef,
    build_attempt,
    build_pod,
    build_podgroup,
    resolve,
    superseded_podgroups,
)
from kubetrain.build.resolve import Resolved
from kubetrain.config import ENV_GANG_SCHEDULING, gang_scheduling_override
from kubetrain.reconcile.plan import Target
from kubetrain.reconcile.target import to_target

JOB = JobRef(name="demo", namespace="team-a", uid="uid-1")
SPEC: dict[str, Any] = {
    "image": "registry.example.com/train:1.0",
    "command": ["python", "train.py"],
    "nodes": 4,
    "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
}
OWNER = {
    "apiVersion": "kubetrain.dev/v1alpha1",
    "kind": "TrainingJob",
    "name": "demo",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def _r(**fields: Any) -> Resolved:
    return resolve(TrainingJobSpec.parse({**SPEC, **fields}))


def test_podgroup_is_a_gang_of_all_nodes_owned_by_the_job() -> None:
    assert build_podgroup(JOB, 3, 4) == {
        "apiVersion": "scheduling.k8s.io/v1alpha2",
        "kind": "PodGroup",
        "metadata": {
            "name": "demo-3",
            "namespace": "team-a",
            "labels": {c.LABEL_JOB: "demo", c.LABEL_ATTEMPT: "3"},
            "ownerReferences": [OWNER],
        },
        "spec": {"schedulingPolicy": {"gang": {"minCount": 4}}},
    }


def test_native_attempt_creates_its_podgroup_before_every_pod_and_links_them() -> None:
    objects = build_attempt(JOB, _r(), 2, gang=GangScheduling.NATIVE)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("PodGroup") == 1
    group = objects[kinds.index("PodGroup")]
    assert group == build_podgroup(JOB, 2, 4)
    pods = [o for o in objects if o["kind"] == "Pod"]
    assert len(pods) == 4 and kinds.index("PodGroup") < kinds.index("Pod")
    for pod in pods:
        assert pod["spec"]["schedulingGroup"] == {"podGroupName": "demo-2"}


def test_native_pods_differ_from_the_operators_own_only_by_the_group_link() -> None:
    r = _r()
    native = build_pod(JOB, r, 1, 0, gang=GangScheduling.NATIVE)
    own = build_pod(JOB, r, 1, 0)
    assert native["spec"].pop("schedulingGroup") == {"podGroupName": "demo-1"}
    assert native == own


def test_operators_own_mode_builds_no_podgroup_and_no_link() -> None:
    objects = build_attempt(JOB, _r(), 1)
    assert build_attempt(JOB, _r(), 1, gang=GangScheduling.KUBETRAIN) == objects
    assert "PodGroup" not in {o["kind"] for o in objects}
    assert all("schedulingGroup" not in o["spec"] for o in objects if o["kind"] == "Pod")


def test_the_target_builds_attempts_in_the_mode_it_was_given() -> None:
    body = {"metadata": {"name": "demo", "namespace": "team-a", "uid": "uid-1"}, "spec": SPEC}
    native = to_target(body, GangScheduling.NATIVE)
    own = to_target(body)
    assert isinstance(native, Target) and isinstance(own, Target)
    native_kinds = [o["kind"] for o in native.build(5, None)]
    own_kinds = [o["kind"] for o in own.build(5, None)]
    assert native_kinds.count("PodGroup") == 1 and "PodGroup" not in own_kinds


def test_a_new_attempts_podgroup_supersedes_every_other_attempts() -> None:
    creates = build_attempt(JOB, _r(), 7, gang=GangScheduling.NATIVE)
    assert superseded_podgroups(creates) == [f"{c.LABEL_JOB}=demo,{c.LABEL_ATTEMPT}!=7"]
    assert superseded_podgroups(build_attempt(JOB, _r(), 7)) == []


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("", None),
        ("auto", None),
        ("native", GangScheduling.NATIVE),
        (" Kubetrain ", GangScheduling.KUBETRAIN),
    ],
)
def test_admin_override_of_the_mode(
    value: str, mode: GangScheduling | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_GANG_SCHEDULING, value)
    assert gang_scheduling_override() is mode


def test_an_unknown_mode_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_GANG_SCHEDULING, "volcano")
    with pytest.raises(ValueError, match=r"KUBETRAIN_GANG_SCHEDULING=.volcano.*auto, kubetrain"):
        gang_scheduling_override()


def test_a_template_cannot_link_the_pods_to_a_group_of_its_own() -> None:
    template = {"spec": {"schedulingGroup": {"podGroupName": "mine"}}}
    with pytest.raises(InvalidSpec) as info:
        TrainingJobSpec.parse({**SPEC, "podTemplate": template})
    assert info.value.field == "spec.podTemplate.spec.schedulingGroup"
    assert "PodGroup" in info.value.message


def test_an_elastic_attempt_of_fewer_nodes_is_a_gang_of_that_many() -> None:
    objects = build_attempt(JOB, _r().with_nodes(2), 3, gang=GangScheduling.NATIVE)
    [group] = [o for o in objects if o["kind"] == "PodGroup"]
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
    assert len([o for o in objects if o["kind"] == "Pod"]) == 2
