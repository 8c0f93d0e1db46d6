"""Property test (issue 9): whatever a job author writes, the parse -> resolve -> build pipeline either
raises InvalidSpec or builds pods that keep the operator's guarantees.

Thousands of generated specs mix valid values with junk in every field, and podTemplates that try
every way around the rules (reserved env, identity, privilege, disruption tolerations, reserved
volumes, nameless or duplicate items, wrong types). No other exception may escape (the operator
would otherwise retry the same spec forever), and a built pod must still be the operator's pod.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrain.api.errors import InvalidSpec
from kubetrain.api.models import TrainingJobSpec
from kubetrain.api.podtemplate import DISRUPTION_TAINTS, RESERVED_ENV
from kubetrain.build import JobRef, Placement, build_attempt, resolve, worker_service_account
from kubetrain.build.env import master_addr

JOB = JobRef(name="prop", namespace="ns", uid="uid-1")

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**20),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def mostly(
    valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Nine times in ten a plausible value, else a hostile one: enough specs get all the way to
    built pods (the invariants below) while every field still sees junk."""
    return st.sampled_from(range(10)).flatmap(lambda i: hostile if i == 0 else valid)


def some(good: list[Any], bad: list[Any] | None = None) -> st.SearchStrategy[Any]:
    hostile = st.one_of(st.sampled_from(bad), junk) if bad else junk
    return mostly(st.sampled_from(good), hostile)


quantity = some(["1", "8", "500m", "4", 4, "2Gi"], ["0", "1Ei", "2E", "1e3", "-1", 0, "64Ti", "0m"])
memory = some(["16Gi", "8Gi", "64Gi", 17179869184], ["0", "1Ei", "-1Gi", "1e30", "1Ki5"])
path = some(["/fsx/ckpt", "/scratch/c", "/fsx"], ["/dev/shm", "/", "rel", "/a/../b", "//x", "/etc"])
names = ["side", "scratch", "cache"]
bad_names = ["worker", "dshm", "fsx", ""]
env_names = ["HF_HOME", "A", "NCCL_DEBUG"]
bad_env = [*RESERVED_ENV, "KUBETRAIN_JOB", "PET_NNODES", "1bad", "", "RDMAV_FORK_SAFE"]
taints = ["team", "nvidia.com/gpu", "dedicated"]
bad_taints = [*DISRUPTION_TAINTS, "aws-node-termination-handler/spot-itn", "kubetrain.dev/x", ""]

env_var = st.fixed_dictionaries(
    {"name": some(env_names, bad_env)},
    optional={
        "value": some(["x", ""]),
        "valueFrom": some(
            [{"fieldRef": {"fieldPath": "metadata.name"}}],
            [{}, {"bogus": 1}, {"fieldRef": {}}, {"secretKeyRef": {"name": "s"}}],
        ),
    },
)
mount = st.fixed_dictionaries(
    {"name": some(names, bad_names)},
    optional={"mountPath": some(["/scratch", "/cache"], ["/dev/shm", "rel"])},
)
security = st.fixed_dictionaries(
    {},
    optional={
        "privileged": st.booleans(),
        "capabilities": st.just({"add": ["SYS_ADMIN"]}),
        "allowPrivilegeEscalation": st.booleans(),
        "runAsUser": st.just(1000),
    },
)
container = st.fixed_dictionaries(
    {"name": some(["worker", *names], [""])},
    optional={
        "image": some(["busybox"], [""]),
        "env": mostly(st.lists(env_var, max_size=3), junk),
        "volumeMounts": mostly(st.lists(mount, max_size=2), junk),
        "securityContext": mostly(security, junk),
        "ports": some([[{"containerPort": 80}]], [[{"containerPort": 80, "hostPort": 80}]]),
        "command": some([["sh"]], [[]]),
    },
)
volume = st.fixed_dictionaries(
    {"name": some(names, bad_names)},
    optional={"emptyDir": st.just({}), "hostPath": st.just({"path": "/"})},
)
toleration = st.fixed_dictionaries(
    {}, optional={"key": some(taints, bad_taints), "operator": some(["Exists", "Equal"])}
)
pod_spec = st.fixed_dictionaries(
    {},
    optional={
        "containers": mostly(st.lists(container, max_size=3), junk),
        "initContainers": mostly(st.lists(container, max_size=2), junk),
        "volumes": mostly(st.lists(volume, max_size=3), junk),
        "tolerations": mostly(st.lists(toleration, max_size=2), junk),
        "hostNetwork": st.booleans(),
        "hostPID": st.booleans(),
        "hostIPC": st.booleans(),
        "nodeName": st.text(max_size=5),
        "serviceAccountName": some(["default"]),
        "automountServiceAccountToken": st.booleans(),
        "hostname": some(["h"]),
        "subdomain": some(["s"]),
        "terminationGracePeriodSeconds": some([0, 30]),
        "restartPolicy": some(["Never"], ["Always", "OnFailure"]),
        "nodeSelector": some([{"team": "a"}]),
        "priorityClassName": some(["high"]),
        "enableServiceLinks": st.booleans(),
    },
)
pod_template = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "metadata": mostly(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "labels": some([{"team": "a"}, {"kubetrain.dev/job": "other"}], [{"a": 1}]),
                        "annotations": some(
                            [{"a": "b"}, {"kubetrain.dev/checkpoint-request": "x"}]
                        ),
                    },
                ),
                junk,
            ),
            "spec": mostly(pod_spec, junk),
        },
    ),
    junk,
)
accelerator = st.one_of(
    st.just({"kind": "none"}),
    st.fixed_dictionaries(
        {"kind": some(["nvidia"], ["neuron", "none", "tpu"])},
        optional={
            "instanceType": some(
                ["p5.48xlarge", "g5.12xlarge", "ml.p4d.24xlarge"], ["x9.metal", "trn1.32xlarge"]
            ),
            "perNode": some([1, 4, 8], [0, 16, 65]),
        },
    ),
    st.fixed_dictionaries(
        {"kind": st.just("neuron")},
        optional={"instanceType": some(["trn1.32xlarge", "trn2.48xlarge"], ["p5.48xlarge"])},
    ),
)
spec_strategy = st.fixed_dictionaries(
    {
        "image": some(
            ["registry.example/train:1", "r.example/t@sha256:abc"],
            [" registry.example/train:1 ", "träin", "", "a b"],
        ),
        "command": some(
            [["python", "train.py"], ["torchrun"], ["python", "-m", "x"]], [[""], [], ["  "]]
        ),
        "resources": st.fixed_dictionaries({}, optional={"cpu": quantity, "memory": memory}),
    },
    optional={
        "args": some([["--lr", "1"], [""]]),
        "launcher": some(["torchrun", "mpirun", "none"], ["deepspeed"]),
        "nodes": some([1, 2, 4], [0, 5000]),
        "accelerator": accelerator,
        "efa": st.fixed_dictionaries(
            {}, optional={"interfaces": some(["auto", 0, 1], [32, 33, "lots"])}
        ),
        "storage": st.fixed_dictionaries(
            {},
            optional={
                "fsx": mostly(
                    st.fixed_dictionaries(
                        {"claimName": some(["fsx-pvc"], ["", "FSX"])},
                        optional={
                            "mountPath": some(["/fsx", "/data"], ["/dev/shm", "/", "x", "/proc"])
                        },
                    ),
                    junk,
                ),
                "sharedMemory": some(["1Gi", "512Mi"], ["0", "1Ei", "64Ti"]),
            },
        ),
        "checkpoint": st.fixed_dictionaries(
            {},
            optional={
                "dir": path,
                "s3Uri": some(["s3://bucket/x"], ["s3://my..bucket/x", "s3://10.0.0.1/x"]),
                "keep": some([1, 3], [0]),
            },
        ),
        "capacity": st.fixed_dictionaries(
            {}, optional={"type": some(["spot", "on-demand", "any"]), "zone": some(["us-west-2b"])}
        ),
        "env": mostly(st.lists(env_var, max_size=3), junk),
        "podTemplate": pod_template,
        "terminationGracePeriodSeconds": some([115, 60], [0, -1]),
        "checkpointDeadlineSeconds": some([90, 30], [5, 4000]),
    },
)


def _check_pod(pod: dict[str, Any], spec: TrainingJobSpec, privileged_ok: bool) -> None:
    meta, ps = pod["metadata"], pod["spec"]
    assert ps["hostname"] == meta["name"]
    assert ps["subdomain"] == JOB.name
    assert ps["serviceAccountName"] == worker_service_account(JOB.name)
    assert ps["restartPolicy"] == "Never"
    assert ps["terminationGracePeriodSeconds"] == spec.termination_grace_period_seconds
    assert "nodeName" not in ps and "automountServiceAccountToken" not in ps
    for t in ps.get("tolerations", []):
        assert t.get("key") and t["key"] not in DISRUPTION_TAINTS
        assert not t["key"].startswith(("aws-node-termination-handler/", "kubetrain.dev/"))
    assert meta["labels"]["kubetrain.dev/job"] == JOB.name
    volumes = [v["name"] for v in ps["volumes"]]
    assert len(volumes) == len(set(volumes))
    assert next(v for v in ps["volumes"] if v["name"] == "dshm")["emptyDir"]["medium"] == "Memory"
    names = [c["name"] for c in ps["containers"]]
    assert len(names) == len(set(names)) and all(names)
    worker = next(c for c in ps["containers"] if c["name"] == "worker")
    env = {e["name"]: e for e in worker["env"]}
    assert env["MASTER_ADDR"]["value"] == master_addr(JOB, 1)
    assert env["KUBETRAIN_JOB"]["value"] == JOB.name
    for c in ps["containers"] + ps.get("initContainers", []):
        env_names = [e["name"] for e in c.get("env", [])]
        assert len(env_names) == len(set(env_names))
        if c["name"] != "worker":
            assert not any(
                n in RESERVED_ENV or n.startswith(("KUBETRAIN_", "PET_")) for n in env_names
            )
        if not privileged_ok:
            assert not (c.get("securityContext") or {}).get("privileged")
    if not privileged_ok:
        assert not any(ps.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in v for v in ps["volumes"])
    ckpt = env["KUBETRAIN_CHECKPOINT_DIR"].get("value", "")
    if ckpt:
        mounts = [m["mountPath"] for m in worker["volumeMounts"] if m["mountPath"] != "/dev/shm"]
        assert any(ckpt == m or ckpt.startswith(m.rstrip("/") + "/") for m in mounts), (
            ckpt,
            mounts,
        )


def _run(raw: Any, privileged_ok: bool) -> None:
    try:
        spec = TrainingJobSpec.parse(raw, allow_privileged=privileged_ok)
        resolved = resolve(spec)
        objects = build_attempt(
            JOB, resolved, 1, resume_manifest="/fsx/m.json", placement=Placement(zone="us-west-2b")
        )
    except InvalidSpec as exc:
        assert exc.field.startswith(("spec", "metadata")), exc.field
        assert exc.field in exc.message
        return
    for pod in (o for o in objects if o["kind"] == "Pod"):
        _check_pod(pod, spec, privileged_ok)


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec_strategy)
def test_build_layer_raises_only_invalid_spec(raw: dict[str, Any]) -> None:
    _run(raw, privileged_ok=False)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec_strategy)
def test_build_layer_with_privileged_pods_allowed(raw: dict[str, Any]) -> None:
    _run(raw, privileged_ok=True)


@settings(max_examples=300, deadline=None)
@given(junk)
def test_junk_spec_raises_only_invalid_spec(raw: Any) -> None:
    _run(raw, privileged_ok=False)
