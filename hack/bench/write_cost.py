"""What one write costs the API server: TrainingJob creates, metadata patches (kopf's finalizer)
and status patches, against pod creates, in kube-apiserver CPU milliseconds per request.

    .venv/bin/python hack/bench/write_cost.py [--writes 300] [--out FILE]

Starts its own local control plane (no operator, no nodes used), sends each kind of write
--writes times at 64 in flight, and reads the kube-apiserver's CPU time around each batch. Then
the same with the CRD's CEL rules (x-kubernetes-validations) removed, to see what they cost.
Results: hack/bench/results/write_cost.json (see --out). A benchmark, not a test: nothing here
asserts a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from scale import ROOT, Api, bare_objects, bare_status, collection, control_plane, cpu_seconds
from scale import kubetrain_job as job_manifest

from cluster import cluster_sh, start_cluster
from kubetrain.api.constants import GROUP, PLURAL, VERSION

IN_FLIGHT = 64


def without_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


async def cost(
    apiserver: Any, count: int, write: Callable[[int], Awaitable[Any]]
) -> dict[str, float]:
    """Milliseconds of kube-apiserver CPU per write, and the batch's wall seconds."""
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with sem:
            await write(i)

    cpu0, t0 = cpu_seconds(apiserver), time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return {
        "apiserver_cpu_ms": round((cpu_seconds(apiserver) - cpu0) / count * 1000, 2),
        "seconds": round(time.monotonic() - t0, 2),
    }


async def measure(api: Api, apiserver: Any, ns: str, count: int) -> dict[str, Any]:
    await api.call(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    )
    jobs = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
    merge = "application/merge-patch+json"
    out: dict[str, Any] = {}
    out["create TrainingJob"] = await cost(
        apiserver, count, lambda i: api.call("POST", jobs, job_manifest(f"j{i}", 8, None))
    )
    finalizer = {"metadata": {"finalizers": ["bench.kubetrain.dev/finalizer"]}}  # kopf's kind
    out["patch TrainingJob (finalizer)"] = await cost(
        apiserver,
        count,
        lambda i: api.call("PATCH", f"{jobs}/j{i}", finalizer, content_type=merge),
    )
    status = bare_status(1, 8)
    out["patch TrainingJob status"] = await cost(
        apiserver,
        count,
        lambda i: api.call("PATCH", f"{jobs}/j{i}/status", status, content_type=merge),
    )
    gangs = [bare_objects(ns, f"p{i}", 8, 1) for i in range(count // 8 + 1)]
    for objs in gangs:  # the pods' ServiceAccounts first, not measured
        for obj in objs:
            if obj["kind"] == "ServiceAccount":
                await api.call("POST", collection(obj, ns), obj)
    pods = [obj for objs in gangs for obj in objs if obj["kind"] == "Pod"][:count]
    out["create Pod"] = await cost(
        apiserver, count, lambda i: api.call("POST", collection(pods[i], ns), pods[i])
    )
    return out


async def run(count: int) -> list[dict[str, Any]]:
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        run_dir = Path(tmp) / "cluster"
        cluster = start_cluster(run_dir)
        api = Api(cluster.kubeconfig)
        results = []
        try:
            crd_file = ROOT / "crds" / "trainingjob.yaml"
            for variant, crd in (
                ("with CEL rules", crd_file),
                ("without CEL rules", Path(tmp) / "no-cel.yaml"),
            ):
                if variant.startswith("without"):
                    crd.write_text(
                        yaml.safe_dump(without_cel(yaml.safe_load(crd_file.read_text())))
                    )
                cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
                cluster.kubectl("wait", "--for=condition=Established", "crd", "--all")
                await asyncio.sleep(3)  # the new schema served
                apiserver = control_plane(run_dir)["kube-apiserver"]
                ns = f"cost-{len(variant)}-{os.getpid() % 10000}"
                results.append({"crd": variant, **await measure(api, apiserver, ns, count)})
                print(json.dumps(results[-1]), flush=True)
        finally:
            await api.close()
            cluster_sh("down", run_dir)
        return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--writes", type=int, default=300, help="writes of each kind (default 300)")
    ap.add_argument("--out", default=str(ROOT / "hack" / "bench" / "results" / "write_cost.json"))
    args = ap.parse_args()
    results = asyncio.run(run(args.writes))
    command = "hack/bench/write_cost.py " + " ".join(sys.argv[1:])
    Path(args.out).write_text(
        json.dumps({"command": command.strip(), "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
