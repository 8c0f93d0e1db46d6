"""Kueue as a local process against the test cluster's API server (issue 11, level 2).

Kueue is built from its pinned Go module (hack/tools/pins.tsv: `kueue`) and its CRDs are applied
from the same module (config/components/crd/bases). Out of a cluster it needs its internal
certificate management off, a serving certificate in `webhook.certDir`, and one at its fixed
metrics path (/etc/kueue/metrics/certs, cmd/kueue/main.go): the process gets that path on a tmpfs
in a mount namespace of its own, so nothing is written under /etc but the empty mount point.

Webhooks: Kueue's webhooks for its own API group (Workload, ClusterQueue, LocalQueue,
ResourceFlavor, Cohort...) are registered, served on 127.0.0.1 with the CA of the certificate
here, because they default and validate the objects the operator and the tests write (a Workload
the webhook refuses must fail here as in a cluster; ClusterQueues and ResourceFlavors get their
finalizers from them). Its job-framework webhooks (batch Job, Pod, JobSet, ...) are left out:
TrainingJob has none (an external framework is the job controller's business), and registering
Kueue's Pod webhook would route every pod of the shared test cluster through this process.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster import Cluster
from kubetrain.api.constants import KUEUE_EXTERNAL_FRAMEWORK, KUEUE_GROUP
from support import free_port, wait_for
from tools import Proc, http_status, module_dir, tool

METRICS_CERT_DIR = "/etc/kueue/metrics/certs"  # fixed in Kueue's cmd/kueue/main.go
WEBHOOK_CONFIGS = {
    "MutatingWebhookConfiguration": "kubetrain-test-kueue-mutating",
    "ValidatingWebhookConfiguration": "kubetrain-test-kueue-validating",
}
# The certificates go onto the tmpfs, then Kueue runs with them (argv: certs dir, kueue, args...).
IN_NAMESPACE = f"""
set -eu
mount -t tmpfs kueue-metrics-certs {METRICS_CERT_DIR}
cp "$1/tls.crt" "$1/tls.key" {METRICS_CERT_DIR}/
shift
exec "$@"
"""


def _certificate(directory: Path) -> bytes:
    """A self-signed serving certificate for 127.0.0.1 (tls.crt, tls.key); returns the PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-webhook.local")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pem)
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


def _webhooks(source: Path, port: int, ca: bytes) -> str:
    """Kueue's webhook configurations for its own API group, pointed at 127.0.0.1:port."""
    out = []
    for doc in yaml.safe_load_all(source.read_text()):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if groups != {KUEUE_GROUP}:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{port}{path}",
                "caBundle": base64.b64encode(ca).decode(),
            }
            kept.append(hook)
        doc["metadata"] = {"name": WEBHOOK_CONFIGS[doc["kind"]]}
        doc["webhooks"] = kept
        out.append(yaml.safe_dump(doc))
    return "---\n".join(out)


@dataclass
class Kueue:
    proc: Proc
    module: Path

    def output(self) -> str:
        return self.proc.output()


def install_crds(cluster: Cluster, module: Path) -> None:
    bases = module / "config" / "components" / "crd" / "bases"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(bases))
    names = [f"{p.stem.split('_', 1)[1]}.{KUEUE_GROUP}" for p in bases.glob("*.yaml")]

    def established() -> bool:
        # Not `kubectl wait`: it errors out when it reads a CRD before its first status write.
        crds = cluster.get("crd", *names)["items"]
        return len(crds) == len(names) and all(
            any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )
            for crd in crds
        )

    wait_for(established, timeout=60, interval=0.3, what="Kueue's CRDs Established")


@contextmanager
def run_kueue(cluster: Cluster, workdir: Path) -> Iterator[Kueue]:
    """Kueue with TrainingJob as an external framework, until the context ends."""
    binary = tool("kueue")
    module = module_dir("kueue")
    install_crds(cluster, module)
    cluster.kubectl("create", "namespace", "kueue-system", check=False)
    certs = workdir / "certs"
    ca = _certificate(certs)
    webhook, metrics, health = free_port(), free_port(), free_port()
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "manageJobsWithoutQueueName": False,
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(certs)},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "integrations": {
            "frameworks": ["batch/job"],
            "externalFrameworks": [KUEUE_EXTERNAL_FRAMEWORK],
        },
        # The visibility API is an aggregated API server of its own; nothing here reads it.
        "featureGates": {"VisibilityOnDemand": False},
    }
    config_file = workdir / "kueue-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    Path(METRICS_CERT_DIR).mkdir(parents=True, exist_ok=True)
    env = {**cluster.env(), "KUBECONFIG": cluster.kubeconfig}
    args = ["unshare", "-m", "--propagation", "private", "sh", "-c", IN_NAMESPACE, "kueue"]
    proc = Proc(
        [*args, str(certs), str(binary), f"--config={config_file}", "--zap-log-level=2"],
        workdir / "kueue.log",
        env,
    )
    registered = False
    try:
        wait_for(
            lambda: (
                proc.popen.poll() is None
                and http_status(f"http://127.0.0.1:{health}/readyz") == 200
            ),
            timeout=120,
            interval=0.5,
            what="Kueue ready (/readyz)",
        )
        source = module / "config" / "components" / "webhook" / "manifests.yaml"
        cluster.kubectl("apply", "-f", "-", input=_webhooks(source, webhook, ca))
        registered = True
        yield Kueue(proc, module)
    except BaseException:
        print(proc.output()[-6000:])
        raise
    finally:
        if registered:  # first: the API server must not call a webhook that is gone
            for kind, name in WEBHOOK_CONFIGS.items():
                cluster.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)
        proc.stop()


def queue_objects(
    prefix: str, namespace: str, gpus: int, *, preemption: bool = False
) -> list[dict[str, Any]]:
    """Two ResourceFlavors (spot, on-demand: Karpenter's capacity-type label), a ClusterQueue with
    GPU quota on spot only (on-demand first with none, so Kueue's choice of spot is visible) and a
    LocalQueue `prefix` in `namespace`. Cluster-scoped names start with `prefix`."""
    big = {
        "cpu": "10000",
        "memory": "100Ti",
        "vpc.amazonaws.com/efa": "10000",
        "hugepages-2Mi": "1Ti",
    }

    def quota(gpu: int) -> list[dict[str, Any]]:
        return [{"name": "nvidia.com/gpu", "nominalQuota": gpu}] + [
            {"name": k, "nominalQuota": v} for k, v in big.items()
        ]

    flavors = [
        {
            "apiVersion": f"{KUEUE_GROUP}/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": f"{prefix}-{capacity}"},
            "spec": {
                "nodeLabels": {"karpenter.sh/capacity-type": capacity},
                "tolerations": [
                    {
                        "key": f"example.com/{capacity}-pool",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    }
                ],
            },
        }
        for capacity in ("on-demand", "spot")
    ]
    cq: dict[str, Any] = {
        "apiVersion": f"{KUEUE_GROUP}/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": prefix},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["nvidia.com/gpu", *big],
                    "flavors": [
                        {"name": f"{prefix}-on-demand", "resources": quota(0)},
                        {"name": f"{prefix}-spot", "resources": quota(gpus)},
                    ],
                }
            ],
        },
    }
    if preemption:
        cq["spec"]["preemption"] = {"withinClusterQueue": "LowerPriority"}
    lq = {
        "apiVersion": f"{KUEUE_GROUP}/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": prefix, "namespace": namespace},
        "spec": {"clusterQueue": prefix},
    }
    return [*flavors, cq, lq]
