"""storage.fsx.provision: the per-job FSx CSI StorageClass and claim, built from the admin's class."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrain.api.models import TrainingJobSpec
from kubetrain.build import JobRef, build_attempt, resolve
from kubetrain.build.fsx import FsxBaseError, build_fsx_provisioned

JOB = JobRef(name="llm", namespace="team-a", uid="uid-1")
BASE_SC: dict[str, Any] = {
    "metadata": {"name": "fsx-base"},
    "provisioner": "fsx.csi.aws.com",
    "parameters": {"subnetId": "subnet-0abc", "securityGroupIds": "sg-0abc"},
    "mountOptions": ["flock"],
}
SPEC: dict[str, Any] = {
    "image": "train:1",
    "command": ["python", "train.py"],
    "nodes": 2,
    "accelerator": {"kind": "nvidia", "instanceType": "p5.48xlarge"},
}


def provision_spec(**provision: Any) -> TrainingJobSpec:
    fsx = {"provision": {"storageClassName": "fsx-base", **provision}}
    return TrainingJobSpec.parse({**SPEC, "storage": {"fsx": fsx}})


def test_storage_class_copies_the_network_and_sets_the_jobs_choices() -> None:
    spec = provision_spec(
        size="2400Gi",
        deploymentType="PERSISTENT_2",
        perUnitStorageThroughput=250,
        s3ImportPath="s3://data-bucket/llm",
        s3ExportPath="s3://data-bucket/llm/out",
    )
    assert spec.storage.fsx is not None and spec.storage.fsx.provision is not None
    sc, pvc = build_fsx_provisioned(JOB, spec.storage.fsx.provision, BASE_SC)
    assert sc == {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "kubetrain-team-a-llm-fsx",
            "labels": {"kubetrain.dev/job": "llm", "kubetrain.dev/job-namespace": "team-a"},
        },
        "provisioner": "fsx.csi.aws.com",
        "parameters": {
            "subnetId": "subnet-0abc",
            "securityGroupIds": "sg-0abc",
            "deploymentType": "PERSISTENT_2",
            "perUnitStorageThroughput": "250",
            "s3ImportPath": "s3://data-bucket/llm",
            "s3ExportPath": "s3://data-bucket/llm/out",
        },
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "mountOptions": ["flock"],
    }
    assert pvc["metadata"]["name"] == "llm-fsx"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"  # deleted with the job
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "kubetrain-team-a-llm-fsx",
        "resources": {"requests": {"storage": "2400Gi"}},
    }


def test_pods_mount_the_provisioned_claim() -> None:
    objs = build_attempt(JOB, resolve(provision_spec()), 1)
    pods = [o for o in objs if o["kind"] == "Pod"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for p in pods
        for v in p["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"llm-fsx"}
    # No static PV for a provisioned volume: the driver makes it.
    assert not [o for o in objs if o["kind"] == "PersistentVolume"]


def test_a_base_class_of_another_driver_is_refused() -> None:
    spec = provision_spec()
    assert spec.storage.fsx is not None and spec.storage.fsx.provision is not None
    with pytest.raises(FsxBaseError, match="storageClassName"):
        build_fsx_provisioned(
            JOB, spec.storage.fsx.provision, {**BASE_SC, "provisioner": "ebs.csi.aws.com"}
        )


@pytest.mark.parametrize(
    ("fsx", "field"),
    [
        ({"provision": {"storageClassName": "b"}, "claimName": "x"}, "spec.storage.fsx"),
        ({"provision": {"storageClassName": "b", "size": "lots"}}, "provision.size"),
        ({"provision": {"storageClassName": "b", "s3ImportPath": "data"}}, "s3ImportPath"),
        ({"provision": {"storageClassName": "b", "s3ExportPath": "s3://bb/x"}}, "s3ExportPath"),
    ],
)
def test_bad_provision_specs_name_the_field(fsx: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainingJobSpec.parse({**SPEC, "storage": {"fsx": fsx}})
