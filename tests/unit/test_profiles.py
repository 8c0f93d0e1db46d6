"""Instance profiles: the facts defaults derive from."""

from __future__ import annotations

import pytest

from kubetrain.profiles import PROFILES, lookup

REQUIRED = [
    "p3.2xlarge", "p3.8xlarge", "p3.16xlarge", "p3dn.24xlarge", "p4d.24xlarge", "p4de.24xlarge",
    "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge", "trn1.2xlarge",
    "trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge",
    *(f"{f}.{s}" for f in ("g4dn", "g5", "g6", "g6e") for s in ("xlarge", "2xlarge", "12xlarge")),
    "g5.48xlarge", "g6e.48xlarge", "g4dn.metal",
]  # fmt: skip


@pytest.mark.parametrize("name", REQUIRED)
def test_known_types(name: str) -> None:
    profile = lookup(name)
    assert profile is not None and profile.name == name
    assert profile.vcpu > 0 and profile.memory_gib > 0 and profile.accelerators >= 1


@pytest.mark.parametrize(
    ("name", "kind", "accelerators", "neuron_cores", "efa"),
    [
        ("p4d.24xlarge", "nvidia", 8, 0, 4),
        ("p5.48xlarge", "nvidia", 8, 0, 32),
        ("p5en.48xlarge", "nvidia", 8, 0, 16),
        ("p6-b200.48xlarge", "nvidia", 8, 0, 8),
        ("p3dn.24xlarge", "nvidia", 8, 0, 1),
        ("p3.16xlarge", "nvidia", 8, 0, 0),
        ("trn1.2xlarge", "neuron", 1, 2, 0),
        ("trn1.32xlarge", "neuron", 16, 32, 8),
        ("trn1n.32xlarge", "neuron", 16, 32, 16),
        ("trn2.48xlarge", "neuron", 16, 64, 16),
        ("g5.xlarge", "nvidia", 1, 0, 0),
        ("g5.48xlarge", "nvidia", 8, 0, 1),
        ("g6e.48xlarge", "nvidia", 8, 0, 4),
    ],
)
def test_facts(name: str, kind: str, accelerators: int, neuron_cores: int, efa: int) -> None:
    profile = lookup(name)
    assert profile is not None
    assert (
        profile.accelerator_kind,
        profile.accelerators,
        profile.neuron_cores,
        profile.efa_interfaces,
    ) == (
        kind,
        accelerators,
        neuron_cores,
        efa,
    )


def test_hyperpod_prefix_and_case() -> None:
    assert lookup("ml.p5.48xlarge") is lookup("p5.48xlarge") is lookup(" P5.48XLARGE ")


def test_unknown_is_none() -> None:
    assert lookup("m5.large") is None
    assert lookup("x9gpu.metal") is None


def test_neuron_cores_divide_evenly() -> None:
    for profile in PROFILES.values():
        if profile.accelerator_kind == "neuron":
            assert profile.neuron_cores % profile.accelerators == 0
            assert profile.cores_per_device in (2, 4)
