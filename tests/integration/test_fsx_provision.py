"""storage.fsx.provision on the real API server, with a stand-in for the FSx CSI driver.

The stand-in does what the driver's external-provisioner does with a StorageClass of provisioner
fsx.csi.aws.com: for a pending claim it "creates a file system" with the class's parameters (it
records them) and a PV bound to the claim; for a Released PV with reclaim policy Delete it
"deletes the file system" and the PV. The kube-controller-manager's PV binder and garbage
collector are the real ones, so what is checked is the operator's part: the claim, the parameters
that would reach FSx, the pods on the claim, and the clean-up when the job goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner
from operator_harness import apply, dump, job_manifest, reasons, running_pods

from cluster import Cluster
from support import wait_for

pytestmark = pytest.mark.cluster

DRIVER = "fsx.csi.aws.com"


class StandInFsxProvisioner:
    """Polls claims of FSx CSI classes: provision on Pending, delete Released volumes."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        from kubernetes import client

        api = cluster.api_client()
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.namespace = namespace
        self.created: list[dict[str, Any]] = []  # the CreateFileSystem calls it would make
        self.deleted: list[str] = []  # file system ids it would delete
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandInFsxProvisioner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._provision()
                self._reclaim()
            except Exception as exc:  # keep serving; the test's waits report what is missing
                print(f"stand-in provisioner: {exc}")
            time.sleep(0.2)

    def _provision(self) -> None:
        for pvc in self.core.list_namespaced_persistent_volume_claim(self.namespace).items:
            sc_name = pvc.spec.storage_class_name
            if pvc.status.phase != "Pending" or not sc_name or pvc.spec.volume_name:
                continue
            sc = self.storage.read_storage_class(sc_name)
            if sc.provisioner != DRIVER:
                continue
            fs_id = "fs-" + pvc.metadata.uid.replace("-", "")[:17]
            if any(c["fileSystemId"] == fs_id for c in self.created):
                continue
            size = pvc.spec.resources.requests["storage"]
            self.created.append(
                {"fileSystemId": fs_id, "storage": size, "parameters": dict(sc.parameters or {})}
            )
            self.core.create_persistent_volume(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {
                        "name": f"pvc-{pvc.metadata.uid}",
                        "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER},
                    },
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": sc.reclaim_policy,
                        "storageClassName": sc_name,
                        "mountOptions": sc.mount_options,
                        "claimRef": {
                            "namespace": self.namespace,
                            "name": pvc.metadata.name,
                            "uid": pvc.metadata.uid,
                        },
                        "csi": {
                            "driver": DRIVER,
                            "volumeHandle": fs_id,
                            "volumeAttributes": {
                                "dnsname": f"{fs_id}.fsx.us-west-2.amazonaws.com",
                                "mountname": "abcdefgh",
                            },
                        },
                    },
                }
            )

    def _reclaim(self) -> None:
        for pv in self.core.list_persistent_volume().items:
            annotations = pv.metadata.annotations or {}
            if annotations.get("pv.kubernetes.io/provisioned-by") != DRIVER:
                continue
            if (
                pv.status.phase == "Released"
                and pv.spec.persistent_volume_reclaim_policy == "Delete"
            ):
                self.deleted.append(pv.spec.csi.volume_handle)
                self.core.delete_persistent_volume(pv.metadata.name)


@pytest.fixture
def base_class(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The admin's FSx CSI StorageClass (network settings), unique to this test."""
    name = f"fsx-base-{namespace}"[:63]
    manifest = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": DRIVER,
        "parameters": {
            "subnetId": "subnet-0123456789abcdef0",
            "securityGroupIds": "sg-0123456789abcdef0",
        },
        "mountOptions": ["flock"],
    }
    import yaml

    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    yield name
    cluster.kubectl("delete", "storageclass", name, "--ignore-not-found", check=False)


@pytest.mark.parametrize("release", ["delete", "ttl"])
def test_job_provisions_its_fsx_volume_and_releases_it(
    cluster: Cluster,
    namespace: str,
    base_class: str,
    monkeypatch: pytest.MonkeyPatch,
    release: str,
) -> None:
    """Released when the job is deleted, or when ttlSecondsAfterFinished deletes it."""
    from operator_harness import install_crd

    install_crd(cluster)
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    provision = {
        "storageClassName": base_class,
        "size": "2400Gi",
        "deploymentType": "PERSISTENT_2",
        "perUnitStorageThroughput": 250,
        "s3ImportPath": "s3://training-data/llm",
        "s3ExportPath": "s3://training-data/llm/export",
    }
    job = "fsxjob"
    manifest = job_manifest(job, nodes=2, storage={"fsx": {"provision": provision}})
    if release == "ttl":
        manifest["spec"]["ttlSecondsAfterFinished"] = 1
    job_class = f"kubetrain-{namespace}-{job}-fsx"
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with (
        StandInFsxProvisioner(cluster, namespace) as driver,
        KopfRunner(args, timeout=60) as runner,
    ):
        try:
            apply(cluster, namespace, manifest)
            items = running_pods(cluster, namespace, job, attempt=1, n=2)
            # The pods run on the provisioned claim, bound to the stand-in's volume.
            for pod in items:
                claims = [
                    v["persistentVolumeClaim"]["claimName"]
                    for v in pod["spec"]["volumes"]
                    if "persistentVolumeClaim" in v
                ]
                assert claims == [f"{job}-fsx"]
            pvc = cluster.get("pvc", f"{job}-fsx", "-n", namespace)
            assert pvc["status"]["phase"] == "Bound"
            assert pvc["spec"]["storageClassName"] == job_class
            assert pvc["spec"]["resources"]["requests"]["storage"] == "2400Gi"
            assert pvc["metadata"]["ownerReferences"][0]["name"] == job
            # What FSx would have been asked for: the admin's network, the job's choices.
            [created] = driver.created
            assert created["storage"] == "2400Gi"
            assert created["parameters"] == {
                "subnetId": "subnet-0123456789abcdef0",
                "securityGroupIds": "sg-0123456789abcdef0",
                "deploymentType": "PERSISTENT_2",
                "perUnitStorageThroughput": "250",
                "s3ImportPath": "s3://training-data/llm",
                "s3ExportPath": "s3://training-data/llm/export",
            }
            assert cluster.get("storageclass", job_class)["reclaimPolicy"] == "Delete"
            assert "FsxProvisioning" in reasons(cluster, namespace, job)

            # The job goes: its claim (owner reference), the volume (reclaim Delete) and its class.
            if release == "ttl":
                for pod in items:
                    cluster.set_pod_outcome(namespace, pod["metadata"]["name"], "Succeeded")
                wait_for(
                    lambda: (
                        cluster.kubectl(
                            "get", "trainingjob", job, "-n", namespace, check=False
                        ).returncode
                        != 0
                    ),
                    timeout=60,
                    what="job deleted by its TTL",
                )
            else:
                cluster.kubectl("delete", "trainingjob", job, "-n", namespace, "--timeout=60s")
            wait_for(
                lambda: (
                    cluster.kubectl(
                        "get", "pvc", f"{job}-fsx", "-n", namespace, check=False
                    ).returncode
                    != 0
                ),
                timeout=60,
                what="claim collected with the job",
            )
            wait_for(
                lambda: driver.deleted == [created["fileSystemId"]], timeout=60, what="FSx deleted"
            )
            assert cluster.kubectl("get", "storageclass", job_class, check=False).returncode != 0
        except Exception:
            print(dump(cluster, namespace))
            raise
    assert runner.exception is None, runner.output[-3000:]


def test_missing_base_class_is_reported_on_the_job(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operator_harness import install_crd

    install_crd(cluster)
    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    manifest = job_manifest(
        "nofsx", nodes=1, storage={"fsx": {"provision": {"storageClassName": "no-such-class"}}}
    )
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kubetrain.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        apply(cluster, namespace, manifest)
        wait_for(
            lambda: "FsxProvisioningFailed" in reasons(cluster, namespace, "nofsx"),
            timeout=30,
            what="FsxProvisioningFailed event",
        )
        assert cluster.get("pods", "-n", namespace)["items"] == []  # no gang without its volume
        cluster.kubectl("delete", "trainingjob", "nofsx", "-n", namespace, "--timeout=60s")
    assert runner.exception is None, runner.output[-3000:]
