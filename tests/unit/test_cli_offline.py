"""The CLI without a cluster: --help, manifests from flags, --dry-run checks and exit codes,
and the doctor's node and spot-notice checks on node objects shaped like the local pools."""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrain.cli import doctor
from kubetrain.cli.main import EXIT_INVALID, EXIT_OK, EXIT_USAGE, run

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hack" / "cluster"))
import nodes as nodepools  # noqa: E402


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_help_has_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "kubetrain logs llama --rank 1 --previous" in text
    assert "exit codes:" in text and "job failed" in text


def test_dry_run_of_an_example_prints_every_pod_and_creates_nothing() -> None:
    code, out, _ = cli(
        "submit",
        "-f",
        str(ROOT / "manifests/examples/p5-fsdp-spot.yaml"),
        "--dry-run",
        "-o",
        "yaml",
    )
    assert code == EXIT_OK
    listed = yaml.safe_load(out)
    pods = [o for o in listed["items"] if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == [f"llama-fsdp-1-{r}" for r in range(4)]
    limits = pods[0]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8" and limits["vpc.amazonaws.com/efa"] == "32"
    assert listed["checks"] == []


def test_dry_run_from_flags_names_the_instance_limit() -> None:
    code, out, _ = cli(
        "submit", "--name", "demo", "--image", "repo/train:1", "--nodes", "2",
        "--instance-type", "g5.12xlarge", "--per-node", "8", "--dry-run", "--", "python", "train.py",
    )  # fmt: skip
    assert code == EXIT_INVALID
    assert "error: spec.accelerator.perNode is 8 but g5.12xlarge has only 4" in out


def test_dry_run_warns_about_what_apply_accepts_but_loses_work() -> None:
    code, out, _ = cli(
        "submit", "--name", "demo", "--image", "repo/train", "--instance-type", "p5.48xlarge",
        "--capacity", "spot", "--dry-run", "-o", "json", "--", "python", "train.py",
    )  # fmt: skip
    assert code == EXIT_OK
    checks = {c["field"]: c for c in json.loads(out)["checks"]}
    assert set(checks) == {"spec.checkpoint", "spec.image"}
    assert all(c["level"] == "warning" for c in checks.values())
    assert "restarts from step 0" in checks["spec.checkpoint"]["message"]


def test_flags_override_the_file(tmp_path: Path) -> None:
    src = yaml.safe_load((ROOT / "manifests/examples/g5-single-node.yaml").read_text())
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(src))
    code, out, _ = cli(
        "submit", "-f", str(path), "--name", "other", "--nodes", "2", "-e", "LR=0.1",
        "--dry-run", "-o", "json",
    )  # fmt: skip
    assert code == EXIT_OK, out
    pods = [o for o in json.loads(out)["items"] if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == ["other-1-0", "other-1-1"]
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["LR"] == "0.1"


def test_submit_without_a_name_is_a_usage_error() -> None:
    code, _, err = cli("submit", "--image", "x:1", "--dry-run", "--", "python")
    assert code == EXIT_USAGE and "needs a name" in err


# --- doctor, pure parts --------------------------------------------------------------------------


def pool() -> list[dict[str, Any]]:
    return [n for n in nodepools.render()]


def test_doctor_nodes_of_the_local_pools_are_ready() -> None:
    findings = doctor.check_nodes(pool())
    assert {f.check for f in findings if f.status == doctor.OK} == {
        "nodes/p5.48xlarge",
        "nodes/p4d.24xlarge",
        "nodes/trn1.32xlarge",
        "nodes/g5.12xlarge",
    }
    # g5 nodes in the pools have no EFA: fine for single-node jobs, said as a warning.
    (warning,) = [f for f in findings if f.status == doctor.WARN]
    assert warning.check == "nodes/g5.12xlarge" and "spec.efa.interfaces: 0" in warning.message


def test_doctor_names_a_missing_device_plugin_efa_and_labels_with_fixes() -> None:
    nodes = pool()
    p5 = next(
        n for n in nodes if n["metadata"]["labels"].get(doctor.INSTANCE_TYPE) == "p5.48xlarge"
    )
    broken = copy.deepcopy(p5)
    broken["metadata"]["name"] = "broken"
    del broken["status"]["allocatable"]["nvidia.com/gpu"]
    del broken["status"]["allocatable"]["vpc.amazonaws.com/efa"]
    for key in (doctor.ZONE, doctor.KARPENTER_CAPACITY, doctor.EKS_CAPACITY):
        broken["metadata"]["labels"].pop(key, None)
    findings = [f for f in doctor.check_nodes([p5, broken], ["p5.48xlarge", "p4d.24xlarge"])]
    messages = {f.message.split(" on ")[0]: f for f in findings if f.status == doctor.FAIL}
    assert set(messages) == {
        "nvidia.com/gpu not allocatable",
        "vpc.amazonaws.com/efa not allocatable",
        f"label {doctor.ZONE} missing",
        f"no capacity-type label ({doctor.KARPENTER_CAPACITY} or {doctor.EKS_CAPACITY})",
    }
    assert "nvidia-device-plugin" in messages["nvidia.com/gpu not allocatable"].fix
    assert "aws-efa-k8s-device-plugin" in messages["vpc.amazonaws.com/efa not allocatable"].fix
    assert any(f.check == "nodes/p4d.24xlarge" and f.status == doctor.WARN for f in findings)


def workload(kind: str, name: str, env: dict[str, str]) -> dict[str, Any]:
    container = {"name": "c", "env": [{"name": k, "value": v} for k, v in env.items()]}
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


@pytest.mark.parametrize(
    ("daemonsets", "deployments", "status", "words"),
    [
        ([], [], doctor.FAIL, "no spot notice reaches the operator"),
        ([workload("DaemonSet", "aws-node-termination-handler", {"TAINT_NODE": "false"})], [],
         doctor.FAIL, "NTH aws-node-termination-handler runs without taintNode=true"),
        ([workload("DaemonSet", "aws-node-termination-handler", {"TAINT_NODE": "true"})], [],
         doctor.OK, "NTH (kube-system/aws-node-termination-handler, taintNode=true)"),
        ([], [workload("Deployment", "karpenter", {})], doctor.FAIL, "without an interruption queue"),
        ([], [workload("Deployment", "karpenter", {"INTERRUPTION_QUEUE": "q"})], doctor.OK,
         "Karpenter interruption handling (queue q)"),
        ([workload("DaemonSet", "kubetrain-node-agent", {})], [], doctor.OK, "kubetrain node agent"),
    ],
)  # fmt: skip
def test_doctor_spot_notice_sources(
    daemonsets: list[dict[str, Any]], deployments: list[dict[str, Any]], status: str, words: str
) -> None:
    finding = doctor.check_spot_notices(pool(), daemonsets, deployments)
    assert finding.status == status and words in finding.message
    if status == doctor.FAIL:
        assert "manifests/node-agent" in finding.fix
