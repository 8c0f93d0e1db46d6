"""resolve(): defaults derived per instance family, and specs that pass the CRD but cannot run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain.api.models import InvalidSpec, TrainingJobSpec
from kubetrain.build import resolve

UNRUNNABLE = yaml.safe_load(
    (Path(__file__).parent / "golden" / "unrunnable_specs.yaml").read_text()
)
BASE = {"image": "registry.example.com/train:1.0", "command": ["python", "train.py"]}


def _spec(**fields: Any) -> TrainingJobSpec:
    return TrainingJobSpec.parse({**BASE, **fields})


# Expected values are computed by hand from AWS's published specs and the rules in resolve.py:
# cpu = (vCPU - max(1, ceil(6% vCPU))) * share; memory = (90% GiB - 1 - 5 if EFA) * share;
# shm = memory/8 clamped to [1, 64] GiB; EFA auto = the instance's count when nodes > 1.
@pytest.mark.parametrize(
    ("instance", "kind", "nodes", "per_node", "procs", "efa", "cpu", "memory", "shm", "hugepages"),
    [
        ("p5.48xlarge", "nvidia", 2, 8, 8, 32, "180", "1837Gi", "64Gi", "5Gi"),
        ("p5en.48xlarge", "nvidia", 2, 8, 8, 16, "180", "1837Gi", "64Gi", "5Gi"),
        ("p4d.24xlarge", "nvidia", 4, 8, 8, 4, "90", "1030Gi", "64Gi", "5Gi"),
        ("p3.2xlarge", "nvidia", 2, 1, 1, 0, "7", "53Gi", "6Gi", None),
        ("g5.12xlarge", "nvidia", 1, 4, 4, 0, "45", "171Gi", "21Gi", None),
        ("g4dn.xlarge", "nvidia", 1, 1, 1, 0, "3", "13Gi", "1Gi", None),
        ("g5.8xlarge", "nvidia", 2, 1, 1, 1, "30", "109Gi", "13Gi", "5Gi"),
        ("trn1.32xlarge", "neuron", 2, 16, 32, 8, "120", "454Gi", "56Gi", "5Gi"),
        ("trn1.2xlarge", "neuron", 1, 1, 2, 0, "7", "27Gi", "3Gi", None),
        ("trn2.48xlarge", "neuron", 2, 16, 64, 16, "180", "1837Gi", "64Gi", "5Gi"),
    ],
)
def test_defaults_per_profile(
    instance: str,
    kind: str,
    nodes: int,
    per_node: int,
    procs: int,
    efa: int,
    cpu: str,
    memory: str,
    shm: str,
    hugepages: str | None,
) -> None:
    r = resolve(_spec(nodes=nodes, accelerator={"kind": kind, "instanceType": instance}))
    assert r.profile is not None and r.profile.name == instance
    assert (r.accelerators_per_node, r.procs_per_node, r.efa_interfaces) == (per_node, procs, efa)
    assert (r.cpu, r.memory, r.shm, r.hugepages) == (cpu, memory, shm, hugepages)
    assert r.world_size == nodes * procs


def test_part_of_a_node_scales_requests_and_efa() -> None:
    r = resolve(
        _spec(nodes=2, accelerator={"kind": "nvidia", "instanceType": "p5.48xlarge", "perNode": 4})
    )
    assert (r.accelerators_per_node, r.procs_per_node, r.efa_interfaces) == (4, 4, 16)
    assert (r.cpu, r.memory) == ("90", "918Gi")


def test_single_node_needs_no_efa_even_on_p5() -> None:
    r = resolve(_spec(nodes=1, accelerator={"kind": "nvidia", "instanceType": "p5.48xlarge"}))
    assert r.efa_interfaces == 0 and r.hugepages is None


def test_explicit_values_win() -> None:
    r = resolve(
        _spec(
            nodes=2,
            accelerator={"kind": "nvidia", "instanceType": "p4d.24xlarge", "perNode": 8},
            efa={"interfaces": 2},
            resources={"cpu": "64", "memory": "900Gi"},
            storage={"sharedMemory": "128Gi"},
        )
    )
    assert (r.efa_interfaces, r.cpu, r.memory, r.shm) == (2, "64", "900Gi", "128Gi")


def test_unknown_instance_with_explicit_values_runs() -> None:
    r = resolve(
        _spec(
            nodes=2,
            accelerator={"kind": "nvidia", "instanceType": "x9gpu.metal", "perNode": 4},
            efa={"interfaces": 2},
            resources={"cpu": 60, "memory": "480Gi"},
        )
    )
    assert r.profile is None
    assert (r.accelerators_per_node, r.procs_per_node, r.efa_interfaces, r.cpu, r.memory) == (
        4,
        4,
        2,
        "60",
        "480Gi",
    )
    assert r.shm == "60Gi"


def test_cpu_only_job_is_never_best_effort() -> None:
    r = resolve(_spec(resources={"cpu": "500m", "memory": "512Mi"}))
    assert (r.accelerators_per_node, r.procs_per_node, r.efa_interfaces) == (0, 1, 0)
    assert (r.cpu, r.memory, r.shm) == ("500m", "512Mi", "256Mi")


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.mark.parametrize("case", UNRUNNABLE["cases"], ids=[c["name"] for c in UNRUNNABLE["cases"]])
def test_unrunnable_specs_name_the_field(case: dict[str, Any]) -> None:
    spec = TrainingJobSpec.parse(_deep_merge(UNRUNNABLE["base"], case["spec"]))  # passes the schema
    with pytest.raises(InvalidSpec) as info:
        resolve(spec)
    assert info.value.field == case["field"]
    assert case["field"] in info.value.message
