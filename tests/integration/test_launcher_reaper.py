"""The exit-handler backstop deletes exactly the TrainingJobs this run left unfinished."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from operator_harness import install_crd

from cluster import Cluster
from kubetrain.client import TrainingJobClient
from kubetrain_kfp import launcher, reaper
from kubetrain_kfp.constants import GROUP, PLURAL, VERSION
from kubetrain_kfp.launcher_spec import build_manifest, build_spec
from kubetrain_kfp.naming import k8s_name

pytestmark = pytest.mark.cluster


def submit(api: Any, namespace: str, run_id: str, task: str, phase: str) -> str:
    spec = build_spec(image="registry.example/train:1", command=["python", "t.py"], nodes=1)
    name = k8s_name("kt", run_id, task)
    tj = TrainingJobClient(namespace, api_client=api.api_client)
    launcher.create_or_attach(tj, build_manifest(name, namespace, spec, run_id, task))
    status = {"phase": phase, "attempt": 1}
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )
    return name


def test_reaper_deletes_only_this_runs_unfinished_jobs(cluster: Cluster, namespace: str) -> None:
    install_crd(cluster)
    api = launcher.custom_objects_api(cluster.kubeconfig)
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    running = submit(api, namespace, mine, "train", "Running")
    done = submit(api, namespace, mine, "eval", "Succeeded")
    foreign = submit(api, namespace, other, "train", "Running")

    assert reaper.reap_trainingjobs(api, namespace, mine) == [running]

    def names() -> set[str]:
        items = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return {i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp")}

    assert names() == {done, foreign}
