"""Invariants of built manifests, independent of the goldens: ownership, placement, env, launchers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain.api import constants as c
from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import (
    JobRef,
    Placement,
    build_attempt,
    build_pod,
    build_rbac,
    completion_ranks,
    fsx_selector,
    pod_name,
    resolve,
)
from kubetrain.build.resolve import Resolved
from kubetrain.reconcile.act import _create_waves

ROOT = Path(__file__).resolve().parents[2]
JOB = JobRef(name="demo", namespace="team-a", uid="uid-1")
BASE: dict[str, Any] = {
    "image": "registry.example.com/train:1.0",
    "command": ["python", "train.py"],
    "nodes": 2,
    "accelerator": {"kind": "nvidia", "instanceType": "p4d.24xlarge"},
}


def _r(**fields: Any) -> Resolved:
    return resolve(TrainingJobSpec.parse({**BASE, **fields}))


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def _examples() -> list[list[dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        job = JobRef(doc["metadata"]["name"], "ml", "uid-x")
        out.append(build_attempt(job, resolve(TrainingJobSpec.parse(doc["spec"])), 2))
    return out


def _containers_ids(node: Any, seen: dict[int, str], path: str) -> None:
    if isinstance(node, dict | list):
        assert id(node) not in seen, f"{path} shares an object with {seen[id(node)]}"
        seen[id(node)] = path
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            _containers_ids(value, seen, f"{path}.{key}")


@pytest.mark.parametrize("objects", _examples())
def test_every_object_is_owned_labelled_and_unshared(objects: list[dict[str, Any]]) -> None:
    seen: dict[int, str] = {}
    for i, obj in enumerate(objects):
        _containers_ids(obj, seen, f"[{i}]{obj['kind']}")
        meta = obj["metadata"]
        assert obj["apiVersion"] and obj["kind"] and meta["name"]
        assert meta["labels"][c.LABEL_JOB]
        if obj["kind"] == "PersistentVolume":
            assert "namespace" not in meta and "ownerReferences" not in meta
            assert meta["labels"][c.LABEL_JOB_NAMESPACE] == "ml"
            assert obj["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
            continue
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "kubetrain.dev/v1alpha1",
                "kind": "TrainingJob",
                "name": meta["labels"][c.LABEL_JOB],
                "uid": "uid-x",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


@pytest.mark.parametrize("objects", _examples())
def test_pods_follow_the_contract(objects: list[dict[str, Any]]) -> None:
    pods = [o for o in objects if o["kind"] == "Pod"]
    kinds = [o["kind"] for o in objects]
    assert kinds[:3] == ["ServiceAccount", "Role", "RoleBinding"]
    assert kinds.index("Service") < kinds.index("Pod")
    for rank, pod in enumerate(pods):
        job = pod["metadata"]["labels"][c.LABEL_JOB]
        name = pod_name(job, 2, rank)
        spec = pod["spec"]
        assert pod["metadata"]["name"] == spec["hostname"] == name
        assert (
            pod["metadata"]["labels"].items()
            >= {
                c.LABEL_ATTEMPT: "2",
                c.LABEL_RANK: str(rank),
                c.LABEL_ROLE: "worker",
            }.items()
        )
        assert spec["restartPolicy"] == "Never"
        assert spec["subdomain"] == job
        assert spec["terminationGracePeriodSeconds"] == 115
        assert all(t.get("key") != c.TAINT_KARPENTER_DISRUPTED for t in spec.get("tolerations", []))
        assert all(t.get("key") for t in spec.get("tolerations", [])), (
            "a keyless toleration tolerates everything"
        )
        env = _env(pod)
        assert "RDMAV_FORK_SAFE" not in env
        for name_ in (
            c.ENV_JOB,
            c.ENV_ATTEMPT,
            c.ENV_CHECKPOINT_DIR,
            c.ENV_CHECKPOINT_S3_URI,
            c.ENV_RESUME_MANIFEST,
        ):
            assert name_ in env
        assert env[c.ENV_POD_NAME] == {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
        }
        assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == f"{job}-2-0.{job}"
        assert env["NODE_RANK"] == env["PET_NODE_RANK"] == str(rank)
        resources = spec["containers"][0]["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), "never BestEffort"
        command = spec["containers"][0]["command"]
        assert command[0] == "torchrun" and "--max_restarts=0" in command
        assert pod["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
        # Provisioners refuse hostname requirements (Karpenter ignores such pods): never one.
        assert "kubernetes.io/hostname" not in json.dumps(spec)


@pytest.mark.parametrize(
    ("capacity", "karpenter", "eks", "preferred"),
    [
        ("spot", ["spot"], ["SPOT"], False),
        ("on-demand", ["on-demand", "reserved"], ["ON_DEMAND", "CAPACITY_BLOCK"], False),
        (
            "spot-then-on-demand",
            ["spot", "on-demand", "reserved"],
            ["SPOT", "ON_DEMAND", "CAPACITY_BLOCK"],
            True,
        ),
    ],
)
def test_capacity_types_in_both_label_dialects(
    capacity: str, karpenter: list[str], eks: list[str], preferred: bool
) -> None:
    node = build_pod(JOB, _r(capacity={"type": capacity}), 1, 0)["spec"]["affinity"]["nodeAffinity"]
    terms = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": karpenter}
            ]
        },
        {
            "matchExpressions": [
                {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": eks}
            ]
        },
    ]
    prefs = node.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    assert bool(prefs) == preferred
    if preferred:
        assert [p["preference"]["matchExpressions"][0]["values"] for p in prefs] == [
            ["spot"],
            ["SPOT"],
        ]


def test_any_capacity_and_no_zone_keeps_the_attempt_in_one_zone() -> None:
    pod = build_pod(JOB, _r(), 4, 1)
    affinity = pod["spec"]["affinity"]
    assert "nodeAffinity" not in affinity
    assert affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {
            "labelSelector": {"matchLabels": {c.LABEL_JOB: "demo", c.LABEL_ATTEMPT: "4"}},
            "topologyKey": "topology.kubernetes.io/zone",
        }
    ]
    assert pod["spec"]["nodeSelector"] == {"node.kubernetes.io/instance-type": "p4d.24xlarge"}


def test_zone_pins_by_selector_instead_of_pod_affinity() -> None:
    pod = build_pod(JOB, _r(capacity={"zone": "us-east-1a"}), 1, 0)
    assert pod["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-east-1a"
    assert "affinity" not in pod["spec"]


@pytest.mark.parametrize(
    ("pinned", "karpenter", "eks", "preferred"),
    [
        (None, ["spot", "on-demand", "reserved"], ["SPOT", "ON_DEMAND", "CAPACITY_BLOCK"], True),
        ("spot", ["spot"], ["SPOT"], False),
        ("on-demand", ["on-demand", "reserved"], ["ON_DEMAND", "CAPACITY_BLOCK"], False),
    ],
)
def test_operator_pins_the_capacity_type_of_spot_then_on_demand(
    pinned: str | None, karpenter: list[str], eks: list[str], preferred: bool
) -> None:
    r = _r(capacity={"type": "spot-then-on-demand"})
    pod = build_pod(JOB, r, 1, 0, placement=Placement(zone="us-west-2a", capacity_type=pinned))
    node = pod["spec"]["affinity"]["nodeAffinity"]
    terms = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": karpenter}
            ]
        },
        {
            "matchExpressions": [
                {"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": eks}
            ]
        },
    ]
    assert ("preferredDuringSchedulingIgnoredDuringExecution" in node) is preferred
    assert pod["spec"]["nodeSelector"]["topology.kubernetes.io/zone"] == "us-west-2a"


def test_spec_hash_moves_with_pod_shaping_fields_only() -> None:
    base = _r().spec_hash
    assert _r(failurePolicy={"maxRestarts": 9}).spec_hash == base
    assert _r(suspend=True, ttlSecondsAfterFinished=5, startupTimeoutSeconds=60).spec_hash == base
    assert _r(nodes=3).spec_hash != base
    assert _r(image="registry.example/train:2").spec_hash != base


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, {}),
        ("1.7.3", {}),
        ("1.6.0", {"FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1"}),
        (
            "1.5",
            {
                "FI_PROVIDER": "efa",
                "NCCL_PROTO": "simple",
                "FI_EFA_USE_DEVICE_RDMA": "1",
                "FI_EFA_FORK_SAFE": "1",
            },
        ),
    ],
)
def test_efa_env_is_minimal_and_version_aware(
    version: str | None, expected: dict[str, str]
) -> None:
    efa: dict[str, Any] = {"interfaces": "auto"}
    if version:
        efa["awsOfiNcclVersion"] = version
    env = _env(build_pod(JOB, _r(efa=efa), 1, 0))
    fi = {k: v for k, v in env.items() if k.startswith("FI_") or k == "NCCL_PROTO"}
    assert fi == expected
    assert env["NCCL_DEBUG"] == "INFO"


def test_no_efa_no_fabric_env_or_resources() -> None:
    pod = build_pod(JOB, _r(efa={"interfaces": 0}), 1, 0)
    env = _env(pod)
    assert not [k for k in env if k.startswith(("FI_", "NCCL_"))]
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    assert "vpc.amazonaws.com/efa" not in requests and "hugepages-2Mi" not in requests


def test_user_env_overrides_tuning_but_keeps_position() -> None:
    env = build_pod(
        JOB, _r(env=[{"name": "NCCL_DEBUG", "value": "WARN"}, {"name": "A", "value": "1"}]), 1, 0
    )
    names = [e["name"] for e in env["spec"]["containers"][0]["env"]]
    assert names.count("NCCL_DEBUG") == 1 and names[-1] == "A"
    assert _env(env)["NCCL_DEBUG"] == "WARN"


@pytest.mark.parametrize(
    ("command", "tail"),
    [
        (["python", "train.py", "--x"], ["train.py", "--x"]),
        (["python3", "-m", "pkg.train"], ["-m", "pkg.train"]),
        (["/usr/bin/python3.11", "train.py"], ["train.py"]),
        (["python", "-u", "train.py"], ["--no-python", "python", "-u", "train.py"]),
        (["./run.sh"], ["--no-python", "./run.sh"]),
    ],
)
def test_torchrun_wraps_the_command(command: list[str], tail: list[str]) -> None:
    got = build_pod(JOB, _r(command=command), 1, 1)["spec"]["containers"][0]["command"]
    assert got[:7] == [
        "torchrun",
        "--nnodes=2",
        "--nproc_per_node=8",
        "--node_rank=1",
        "--master_addr=demo-1-0.demo",
        "--master_port=29500",
        "--max_restarts=0",
    ]
    assert got[7:] == tail


def test_launcher_none_runs_the_command_as_is() -> None:
    r = _r(launcher="none", args=["--lr", "3e-4"])
    container = build_pod(JOB, r, 1, 0)["spec"]["containers"][0]
    assert container["command"] == ["python", "train.py"] and container["args"] == ["--lr", "3e-4"]
    assert list(completion_ranks(r)) == [0, 1]


def test_mpirun_rank0_launches_the_world_and_others_serve_ssh() -> None:
    r = _r(launcher="mpirun", nodes=3)
    rank0 = build_pod(JOB, r, 1, 0)["spec"]["containers"][0]["command"]
    assert rank0[:2] == ["bash", "-c"] and "demo-1-1.demo demo-1-2.demo" in rank0[2]
    assert rank0[rank0.index("-np") + 1] == "24"
    assert rank0[rank0.index("-H") + 1] == "demo-1-0.demo:8,demo-1-1.demo:8,demo-1-2.demo:8"
    assert rank0[-2:] == ["python", "train.py"]
    assert build_pod(JOB, r, 1, 2)["spec"]["containers"][0]["command"][0] == "/usr/sbin/sshd"
    assert list(completion_ranks(r)) == [0]


def test_pod_template_merges_last() -> None:
    template = {
        "metadata": {"labels": {"team": "x", c.LABEL_RANK: "99"}, "annotations": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "env": [{"name": "EXTRA", "value": "1"}],
                    "securityContext": {"privileged": False},
                },
                {"name": "sidecar", "image": "busybox"},
            ],
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "nodeSelector": {"pool": "a"},
            "priorityClassName": "high",
        },
    }
    pod = build_pod(JOB, _r(podTemplate=template), 1, 0)
    spec = pod["spec"]
    assert (
        pod["metadata"]["labels"]["team"] == "x" and pod["metadata"]["labels"][c.LABEL_RANK] == "0"
    )
    assert pod["metadata"]["annotations"]["a"] == "b"
    assert pod["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
    assert [x["name"] for x in spec["containers"]] == ["worker", "sidecar"]
    worker = spec["containers"][0]
    assert worker["env"][-1] == {"name": "EXTRA", "value": "1"} and len(worker["env"]) > 20
    assert worker["securityContext"] == {"privileged": False}
    assert "nvidia.com/gpu" in worker["resources"]["limits"]
    assert [t["key"] for t in spec["tolerations"]] == [
        "nvidia.com/gpu",
        "vpc.amazonaws.com/efa",
        "dedicated",
    ]
    assert [v["name"] for v in spec["volumes"]] == ["dshm", "cache"]
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "p4d.24xlarge", "pool": "a"}
    assert spec["priorityClassName"] == "high" and spec["restartPolicy"] == "Never"


def test_rbac_lists_exactly_this_attempts_pods() -> None:
    sa, role, binding = build_rbac(JOB, 3, 2)
    assert sa["metadata"]["name"] == "demo-worker"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": ["demo-3-0", "demo-3-1"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "demo-3-worker"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-worker", "namespace": "team-a"}
    ]


def test_an_existing_service_account_gets_the_role_and_no_account_is_made() -> None:
    """spec.serviceAccountName (IRSA / Pod Identity): bind the attempt's Role to it."""
    r = _r(serviceAccountName="train-s3")
    objs = build_attempt(JOB, r, 1)
    assert not [o for o in objs if o["kind"] == "ServiceAccount"]
    [binding] = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "train-s3", "namespace": "team-a"}
    ]
    pods = [o for o in objs if o["kind"] == "Pod"]
    assert {p["spec"]["serviceAccountName"] for p in pods} == {"train-s3"}
    # Without it, as before: a per-job account.
    default = build_attempt(JOB, _r(), 1)
    assert [o["metadata"]["name"] for o in default if o["kind"] == "ServiceAccount"] == [
        "demo-worker"
    ]


@pytest.mark.parametrize("bad", ["Train", "train_s3", "-train", "a" * 254])
def test_service_account_name_is_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="serviceAccountName"):
        _r(serviceAccountName=bad)


def test_pod_names_fit_hostnames() -> None:
    assert len(pod_name("x" * 52, 99999, 4095)) == 63
    with pytest.raises(ValueError, match="63"):
        pod_name("x" * 60, 100, 1)


def test_fsx_selector_matches_pv_labels() -> None:
    assert fsx_selector(JOB) == "kubetrain.dev/job=demo,kubetrain.dev/job-namespace=team-a"


@pytest.mark.parametrize("objects", _examples())
def test_what_an_object_refers_to_is_created_in_an_earlier_wave(
    objects: list[dict[str, Any]],
) -> None:
    """The API server looks these up on create: a RoleBinding's Role (RBAC escalation check: sent
    in the same wave, the binding could fail 404), a pod's ServiceAccount and claims (admission)."""
    wave_of = {
        (obj["kind"], obj["metadata"]["name"]): i
        for i, wave in enumerate(_create_waves(objects))
        for obj in wave
    }
    for obj in objects:
        here = wave_of[(obj["kind"], obj["metadata"]["name"])]
        refs: list[tuple[str, str]] = []
        if obj["kind"] == "RoleBinding":
            refs.append(("Role", obj["roleRef"]["name"]))
        if obj["kind"] == "Pod":
            refs.append(("ServiceAccount", obj["spec"]["serviceAccountName"]))
            refs += [
                ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
                for v in obj["spec"].get("volumes", [])
                if "persistentVolumeClaim" in v
            ]
        for ref in refs:
            if ref in wave_of:  # else made by the user (an IRSA account, a shared claim)
                assert wave_of[ref] < here, f"{ref} is sent with the {obj['kind']} that needs it"
