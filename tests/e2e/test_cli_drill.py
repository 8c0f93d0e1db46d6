"""The `kubetrain` CLI (and so `kubetrain.client`) driving a real job through a spot drill.

A real operator, the real API server and real training processes (the stand-in kubelet runs
tests/e2e/chatty_train.py per pod): submit, follow, checkpoint now and see it committed, see the
checkpoints newest first with the one a resume would load, a spot notice, then the logs of rank 1
from the attempt the notice ended (from CloudWatch on moto, where a stand-in for Fluent Bit
shipped the container's log file, as Container Insights does on EKS), suspend, resume, delete.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_kubelet import LocalKubelet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from operator_harness import job_manifest, pods, status

from cluster import Cluster
from kubetrain.api.constants import TAINT_NTH_SPOT_ITN
from kubetrain.cli.main import EXIT_NOT_FOUND, EXIT_OK, run
from support import SIM_FSX_POD_TEMPLATE, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torch]
SCRIPT = Path(__file__).with_name("chatty_train.py")
TOY_ENV = {"TOY_STEPS": "100000", "TOY_STEP_SECONDS": "0.05", "TOY_EVERY": "1000"}


class Cli:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.common = ["--kubeconfig", cluster.kubeconfig, "-n", namespace]

    def __call__(self, command: str, *args: str, expect: int = EXIT_OK) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run([command, *self.common, *args], out=out, err=err)
        assert code == expect, (command, args, code, out.getvalue(), err.getvalue())
        return out.getvalue() + err.getvalue()


def ship_to_cloudwatch(logs: Any, group: str, namespace: str, pod: str, text: str) -> None:
    """What Fluent Bit (Container Insights) does with a container's log file."""
    stream = (
        f"ip-10-0-0-1.us-west-2.compute.internal-application.var.log.containers."
        f"{pod}_{namespace}_worker-{uuid.uuid4().hex}.log"
    )
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    events = [
        {"timestamp": now + i, "message": json.dumps({"log": line + "\n", "stream": "stdout"})}
        for i, line in enumerate(text.splitlines())
    ]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_cli_submit_follow_checkpoint_spot_logs_suspend_resume_delete(
    cluster: Cluster, namespace: str, operator: None, aws_env: str, tmp_path: Path
) -> None:
    import boto3

    job = "clidrill"
    cli = Cli(cluster, namespace)
    manifest = job_manifest(
        job,
        image="registry.example/train:1",
        nodes=2,
        launcher="none",
        accelerator={"kind": "nvidia", "instanceType": "p5.48xlarge"},
        capacity={"type": "spot"},
        checkpoint={"dir": f"/fsx/checkpoints/{job}", "keep": 5},
        failurePolicy={"maxRestarts": 0, "maxInterruptions": 5, "backoffSeconds": 0},
        podTemplate=SIM_FSX_POD_TEMPLATE,
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    store = tmp_path / "mnt" / "fsx" / "checkpoints" / job  # where the stand-in kubelet mounts FSx

    # The dry run is silent about this spec and creates nothing.
    assert "nothing was created" in cli("submit", "-f", str(path), "--dry-run")
    cli("get", job, expect=EXIT_NOT_FOUND)

    with LocalKubelet(cluster, namespace, job, SCRIPT, tmp_path, extra_env=TOY_ENV) as kubelet:
        assert f"trainingjob.kubetrain.dev/{job} created" in cli("submit", "-f", str(path))
        followed = cli("wait", job, "--for", "Running", "--timeout", "90")
        assert "phase - -> " in followed and "condition Ready=True" in followed
        table = cli("get")
        assert table.splitlines()[0].split() == [
            "NAME", "PHASE", "READY", "ATTEMPT", "RESTARTS", "CHECKPOINT", "AGE",
        ]  # fmt: skip
        assert table.splitlines()[1].split()[:4] == [job, "Running", "2/2", "1"]
        wait_for(lambda: len(kubelet.running_pods()) == 2, timeout=30, what="2 processes")

        # Checkpoint now: every rank saves the same step, rank 0 commits, training goes on.
        out = cli("checkpoint", job, "--timeout", "90", "-o", "json")
        answer = json.loads(out)
        assert answer["request"].startswith("manual-")
        step = answer["checkpoint"]["step"]
        assert step > 0 and answer["checkpoint"]["id"] == answer["request"]
        wait_for(
            lambda: (
                (status(cluster, namespace, job).get("checkpoint") or {}).get("id")
                == answer["request"]
            ),
            timeout=30,
            what="status.checkpoint = the manual checkpoint",
        )
        assert {p["status"]["phase"] for p in pods(cluster, namespace, job, attempt=1)} == {
            "Running"
        }

        listing = json.loads(cli("checkpoints", job, "--store", str(store), "-o", "json"))
        assert listing["cluster"][0]["step"] == step
        stored = listing["store"]["checkpoints"]
        assert stored[0]["step"] == step and stored[0]["complete"] and stored[0]["resume"]
        human = cli("checkpoints", job, "--store", str(store))
        assert f"A new attempt resumes from step {step}." in human

        # A spot notice: the gang checkpoints and comes back as attempt 2 on other nodes.
        victim = pods(cluster, namespace, job, attempt=1)[1]["spec"]["nodeName"]
        cluster.taint_node(victim, TAINT_NTH_SPOT_ITN, "itn-1")
        wait_for(
            lambda: (
                (s := status(cluster, namespace, job)).get("attempt") == 2
                and s.get("phase") == "Running"
            ),
            timeout=90,
            what="attempt 2 running",
        )
        described = cli("describe", job)
        assert "Interruptions:" in described and victim in described
        assert TAINT_NTH_SPOT_ITN in described
        emergency = status(cluster, namespace, job)["checkpoint"]
        assert emergency["kind"] == "emergency" and emergency["step"] >= step
        newest = json.loads(cli("checkpoints", job, "--store", str(store), "-o", "json"))
        assert newest["store"]["checkpoints"][0]["step"] == emergency["step"]

        # Rank 1 of attempt 1 is gone from the API server; its logs are in CloudWatch.
        gone = cli("logs", job, "--rank", "1", "--previous", expect=EXIT_NOT_FOUND)
        assert "--log-group" in gone
        wait_for(lambda: kubelet.log_of(f"{job}-1-1"), timeout=10, what="rank 1 log file")
        logs = boto3.client("logs", endpoint_url=aws_env)
        group = f"/aws/containerinsights/{namespace}/application"
        logs.create_log_group(logGroupName=group)
        ship_to_cloudwatch(logs, group, namespace, f"{job}-1-0", "rank 0 output\n")
        ship_to_cloudwatch(logs, group, namespace, f"{job}-1-1", kubelet.log_of(f"{job}-1-1"))
        previous = cli("logs", job, "--rank", "1", "--previous", "--log-group", group)
        assert previous.splitlines()[0] == f"rank 1 of {job}-1-1"
        assert f"checkpoint request {answer['request']}" in previous
        assert "rank 0 output" not in previous

        # Suspend: checkpoint and release the nodes; resume: attempt 3 from that checkpoint.
        assert "suspending" in cli("suspend", job)
        cli("wait", job, "--for", "Suspended", "--timeout", "90")
        wait_for(lambda: not kubelet.running_pods(), timeout=60, what="processes stopped")
        assert "resuming" in cli("resume", job)
        cli("wait", job, "--for", "Running", "--timeout", "90")
        assert status(cluster, namespace, job)["attempt"] == 3

        assert "deleted" in cli("delete", job, "--wait")
        cli("get", job, expect=EXIT_NOT_FOUND)
        assert not kubelet.errors, kubelet.errors
