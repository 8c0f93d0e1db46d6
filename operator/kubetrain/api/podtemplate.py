"""`spec.podTemplate`: which parts of the pod are the user's, checked at apply and again at parse.

The operator creates pods with its own ServiceAccount, so anything a job author writes here is
done *by the operator*. A field that decides the pod's identity, its privilege or the gang is the
operator's, and a user value would either break the job silently (rendezvous, checkpoint protocol,
spot handling) or grant what the author could not do directly (a confused deputy):

refused always (CEL on the CRD, and `check_pod_template`):
  - env the operator sets (MASTER_ADDR, WORLD_SIZE, RANK, ..., KUBETRAIN_*, PET_*) in any
    container's `env`; `hostname`, `subdomain` (rendezvous DNS); `serviceAccountName`,
    `serviceAccount`, `automountServiceAccountToken` (the checkpoint agent's identity);
    `nodeName` (bypasses the scheduler, instance type and zone); `terminationGracePeriodSeconds`
    (use spec.terminationGracePeriodSeconds); `restartPolicy` other than Never;
  - tolerations of disruption taints (karpenter.sh/disrupted, karpenter.sh/disruption,
    aws-node-termination-handler/*, kubetrain.dev/*, node.kubernetes.io/out-of-service,
    node.kubernetes.io/unschedulable) and key-less tolerations, which tolerate every taint;
  - volumes named `dshm` or `fsx` (the operator's), and a mount at /dev/shm of anything but dshm;
  - containers or volumes without a name, or two with the same name.
refused unless the cluster admin allows privileged pods in the operator's configuration
(`KUBETRAIN_ALLOW_PRIVILEGED_PODS=true`; the ValidatingAdmissionPolicy in manifests/base reads
the same setting from its ConfigMap) — checked by `check_pod_template`, i.e. at reconcile:
  - `securityContext.privileged`, `securityContext.capabilities.add`, `allowPrivilegeEscalation`
    in any container; `hostNetwork`, `hostPID`, `hostIPC`; `hostPath` volumes; `hostPort`.
Everything else is the user's: labels and annotations (not kubetrain.dev/*), volumes and mounts,
sidecars and init containers, nodeSelector, affinity, topologySpreadConstraints, other
tolerations, priorityClassName, schedulerName, securityContext (non-privileged), imagePullSecrets...

Pure Python (no pydantic): the CRD generator and the model validator both read this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from kubetrain.api.errors import InvalidSpec

# Env names the operator owns: the distributed env and the runtime contract. A user value would
# silently desynchronise ranks.
RESERVED_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "NNODES",
    "NPROC_PER_NODE",
)
RESERVED_ENV_PREFIXES = ("KUBETRAIN_", "PET_")
RESERVED_VOLUMES = ("dshm", "fsx")
DISRUPTION_TAINTS = (
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
    "node.kubernetes.io/out-of-service",
    "node.kubernetes.io/unschedulable",
)
DISRUPTION_TAINT_PREFIXES = ("aws-node-termination-handler/", "kubetrain.dev/")
CONTAINER_LISTS = ("containers", "initContainers")
# Operator-owned pod fields: (field, message tail).
OPERATOR_FIELDS = (
    ("hostname", "the operator sets it to the pod name for rendezvous DNS"),
    ("subdomain", "the operator sets it to the job's headless Service for rendezvous DNS"),
    (
        "serviceAccountName",
        "pods run as the job's own ServiceAccount, whose Role the checkpoint agent needs",
    ),
    (
        "serviceAccount",
        "pods run as the job's own ServiceAccount, whose Role the checkpoint agent needs",
    ),
    (
        "automountServiceAccountToken",
        "the checkpoint agent needs the job's ServiceAccount token",
    ),
    (
        "nodeName",
        "the scheduler places the gang (instance type, capacity type, one zone); use "
        "nodeSelector or affinity",
    ),
    (
        "schedulingGroup",
        "the operator links each attempt's pods to that attempt's PodGroup (native gang "
        "scheduling); a group of your own would split the gang",
    ),
    (
        "terminationGracePeriodSeconds",
        "use spec.terminationGracePeriodSeconds, which the checkpoint deadline is checked against",
    ),
)
PRIVILEGED_POD_FIELDS = ("hostNetwork", "hostPID", "hostIPC")
ALLOW_PRIVILEGED_HINT = (
    "privileged and host-level settings are refused unless the cluster admin allows them in "
    "the operator's configuration (KUBETRAIN_ALLOW_PRIVILEGED_PODS)"
)

P = "spec.podTemplate"
MSG_OPERATOR_FIELD = (
    P + ".spec.{field} is set by the operator and cannot be overridden: {why}; remove it"
)
MSG_RESTART = (
    P + ".spec.restartPolicy must be Never (or unset): restarts belong to the operator, "
    "which restarts the whole gang; use spec.failurePolicy.maxRestarts"
)
MSG_TOLERATION = (
    P + ".spec.tolerations[].key must name a taint, and not a disruption taint "
    "(karpenter.sh/disrupted, karpenter.sh/disruption, aws-node-termination-handler/*, "
    "kubetrain.dev/*, node.kubernetes.io/out-of-service, node.kubernetes.io/unschedulable): a gang "
    "placed on a node being drained is lost; remove the toleration"
)
MSG_ENV = (
    P + ".spec.{list}[].env[].name must not be one the operator sets (KUBETRAIN_*, PET_*, "
    "MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_WORLD_SIZE, NODE_RANK, NNODES, "
    "NPROC_PER_NODE): remove it; use spec.nodes and spec.accelerator instead"
)
MSG_VOLUME_NAME = (
    P + ".spec.volumes[].name must not be dshm or fsx (the operator's /dev/shm and FSx volumes): "
    "rename it; size /dev/shm with spec.storage.sharedMemory"
)
MSG_SHM_MOUNT = (
    P + ".spec.{list}[].volumeMounts[].mountPath /dev/shm is the operator's (volume dshm): "
    "remove the mount; size it with spec.storage.sharedMemory"
)
MSG_METADATA = (
    P + ".metadata may hold only labels and annotations (maps of strings): fix or remove it"
)

MAX_CONTAINERS = 16
MAX_MOUNTS = 32
MAX_PATH = 1024  # keeps the checkpoint.dir-inside-a-mount rule within the CEL cost budget
MAX_ITEMS = 128
MAX_NAME = 253


def _env_rule() -> str:
    names = ", ".join(f"'{n}'" for n in RESERVED_ENV)
    prefixes = " && ".join(f"!self.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES)
    return f"!(self.name in [{names}]) && {prefixes}"


def _toleration_rule() -> str:
    keys = ", ".join(f"'{k}'" for k in DISRUPTION_TAINTS)
    prefixes = " && ".join(f"!self.key.startsWith('{p}')" for p in DISRUPTION_TAINT_PREFIXES)
    return f"has(self.key) && self.key != '' && !(self.key in [{keys}]) && {prefixes}"


def _string(max_length: int = MAX_NAME) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _string_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _loose(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object whose listed fields are typed (so CEL can read them) and the rest kept as is."""
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": properties,
        **extra,
    }


def _named_list(item: dict[str, Any], max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """A list keyed by name: the API server rejects a missing name or two items with one name."""
    return {
        "type": "array",
        "maxItems": max_items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": item,
    }


def _container(list_name: str) -> dict[str, Any]:
    shm = MSG_SHM_MOUNT.format(list=list_name)
    return _loose(
        {
            "name": _string(),
            "env": _named_list(
                _loose(
                    {"name": _string(256)},
                    required=["name"],
                    **{
                        "x-kubernetes-validations": [
                            {"rule": _env_rule(), "message": MSG_ENV.format(list=list_name)}
                        ]
                    },
                ),
                max_items=512,
            ),
            "volumeMounts": {
                "type": "array",
                "maxItems": MAX_MOUNTS,
                "items": _loose(
                    {"name": _string(), "mountPath": _string(MAX_PATH)},
                    **{
                        "x-kubernetes-validations": [
                            {
                                "rule": "!has(self.mountPath) || self.mountPath != '/dev/shm' "
                                "|| (has(self.name) && self.name == 'dshm')",
                                "message": shm,
                            }
                        ]
                    },
                ),
            },
            # Typed so the admission policy (api/admission.py) can read them.
            "securityContext": _loose(
                {
                    "privileged": {"type": "boolean"},
                    "allowPrivilegeEscalation": {"type": "boolean"},
                    "capabilities": _loose(
                        {"add": {"type": "array", "maxItems": 64, "items": _string(64)}}
                    ),
                }
            ),
            "ports": {
                "type": "array",
                "maxItems": 64,
                "items": _loose({"hostPort": {"type": "integer"}}),
            },
        },
        required=["name"],
    )


def schema(description: str) -> dict[str, Any]:
    """The structural schema of spec.podTemplate, with the always-refused fields as CEL rules."""
    rules: list[dict[str, str]] = [
        {
            "rule": f"!has(self.{field})",
            "message": MSG_OPERATOR_FIELD.format(field=field, why=why),
            "fieldPath": f".{field}",
        }
        for field, why in OPERATOR_FIELDS
    ]
    rules.append(
        {
            "rule": "!has(self.restartPolicy) || self.restartPolicy == 'Never'",
            "message": MSG_RESTART,
            "fieldPath": ".restartPolicy",
        }
    )
    pod_spec = _loose(
        {
            **{
                f: {"type": "string"}
                for f, _ in OPERATOR_FIELDS
                if f not in ("automountServiceAccountToken", "schedulingGroup")
            },
            "automountServiceAccountToken": {"type": "boolean"},
            "schedulingGroup": _loose({}),
            **{f: {"type": "boolean"} for f in PRIVILEGED_POD_FIELDS},
            "terminationGracePeriodSeconds": {"type": "integer"},
            "restartPolicy": {"type": "string"},
            "containers": _named_list(_container("containers"), MAX_CONTAINERS),
            "initContainers": _named_list(_container("initContainers"), MAX_CONTAINERS),
            "volumes": _named_list(
                _loose(
                    {"name": _string(), "hostPath": _loose({})},
                    required=["name"],
                    **{
                        "x-kubernetes-validations": [
                            {
                                "rule": "!(self.name in ["
                                + ", ".join(f"'{v}'" for v in RESERVED_VOLUMES)
                                + "])",
                                "message": MSG_VOLUME_NAME,
                            }
                        ]
                    },
                )
            ),
            "tolerations": {
                "type": "array",
                "maxItems": 64,
                "items": _loose(
                    {"key": _string(), "operator": {"type": "string"}},
                    **{
                        "x-kubernetes-validations": [
                            {"rule": _toleration_rule(), "message": MSG_TOLERATION}
                        ]
                    },
                ),
            },
        },
        **{"x-kubernetes-validations": rules},
    )
    pod_spec["properties"]["terminationGracePeriodSeconds"] = {"type": "integer"}
    return {
        "description": description,
        "type": "object",
        "nullable": True,
        "properties": {
            "metadata": {
                "type": "object",
                "properties": {"labels": _string_map(), "annotations": _string_map()},
            },
            "spec": pod_spec,
        },
    }


# --- the same rules in Python (objects stored before a CRD upgrade, and the hypothesis tests) ------


def _fail(field: str, message: str) -> NoReturn:
    raise InvalidSpec(field, message)


def _is_str_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _named_items(items: object, field: str, kind: str) -> list[Mapping[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        _fail(field, f"{field} must be a list of {kind}: fix it")
    seen: set[str] = set()
    out: list[Mapping[str, Any]] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            _fail(f"{field}[{i}].name", f"{field}[{i}].name is required: name every {kind[:-1]}")
        assert isinstance(name, str) and isinstance(item, Mapping)
        if name in seen:  # the API server says "<field>[i]: Duplicate value"
            _fail(f"{field}[{i}]", f"{field}[{i}]: name {name!r} is used twice: rename one")
        seen.add(name)
        out.append(item)
    return out


def _list_of_maps(items: object, field: str) -> list[Mapping[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        _fail(field, f"{field} must be a list of objects: fix it")
    out: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping):
            _fail(field, f"{field} must be a list of objects: fix it")
        out.append(item)
    return out


def containers(template: object) -> dict[str, list[Mapping[str, Any]]]:
    """The template's container lists (unchecked input: whatever is not a list of maps is [])."""
    spec = template.get("spec") if isinstance(template, Mapping) else None
    out: dict[str, list[Mapping[str, Any]]] = {}
    for key in CONTAINER_LISTS:
        items = spec.get(key) if isinstance(spec, Mapping) else None
        out[key] = [x for x in items if isinstance(x, Mapping)] if isinstance(items, list) else []
    return out


def worker_mount_paths(template: object, worker: str = "worker") -> list[str]:
    """mountPaths the template adds to the worker container (where a checkpoint dir may live)."""
    paths: list[str] = []
    for c in containers(template)["containers"]:
        if c.get("name") == worker and isinstance(c.get("volumeMounts"), list):
            paths += [
                m["mountPath"]
                for m in c["volumeMounts"]
                if isinstance(m, Mapping) and isinstance(m.get("mountPath"), str)
            ]
    return paths


def _reserved_env(name: str) -> bool:
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


def _disruption_taint(key: str) -> bool:
    return key in DISRUPTION_TAINTS or key.startswith(DISRUPTION_TAINT_PREFIXES)


def check_pod_template(template: object, *, allow_privileged: bool = False) -> None:
    """Raise InvalidSpec naming the first field the user may not set (see the module docstring)."""
    if template is None:
        return
    if not isinstance(template, Mapping):
        _fail(P, f"{P} must be an object {{metadata, spec}}: fix it")
    assert isinstance(template, Mapping)
    for key in template:
        if key not in ("metadata", "spec"):
            _fail(f"{P}.{key}", f"{P}.{key} is not a podTemplate field (metadata, spec): remove it")
    meta = template.get("metadata")
    if meta is not None:
        if not isinstance(meta, Mapping) or any(k not in ("labels", "annotations") for k in meta):
            _fail(f"{P}.metadata", MSG_METADATA)
        assert isinstance(meta, Mapping)
        for key in ("labels", "annotations"):
            if meta.get(key) is not None and not _is_str_map(meta[key]):
                _fail(f"{P}.metadata.{key}", f"{P}.metadata.{key} must map strings to strings")
    spec = template.get("spec")
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        _fail(f"{P}.spec", f"{P}.spec must be a pod spec object: fix it")
    assert isinstance(spec, Mapping)
    for field, why in OPERATOR_FIELDS:
        if field in spec:
            _fail(f"{P}.spec.{field}", MSG_OPERATOR_FIELD.format(field=field, why=why))
    if spec.get("restartPolicy", "Never") != "Never":
        _fail(f"{P}.spec.restartPolicy", MSG_RESTART)
    for i, t in enumerate(_list_of_maps(spec.get("tolerations"), f"{P}.spec.tolerations")):
        key = t.get("key")
        if not isinstance(key, str) or not key or _disruption_taint(key):
            _fail(f"{P}.spec.tolerations[{i}].key", MSG_TOLERATION.replace("[]", f"[{i}]", 1))
    volumes = _named_items(spec.get("volumes"), f"{P}.spec.volumes", "volumes")
    for i, v in enumerate(volumes):
        if v["name"] in RESERVED_VOLUMES:
            _fail(f"{P}.spec.volumes[{i}].name", MSG_VOLUME_NAME.replace("[]", f"[{i}]", 1))
    for list_name in CONTAINER_LISTS:
        field = f"{P}.spec.{list_name}"
        for i, c in enumerate(_named_items(spec.get(list_name), field, "containers")):
            sc = c.get("securityContext")
            if sc is not None and not isinstance(sc, Mapping):
                at = f"{field}[{i}].securityContext"
                _fail(at, f"{at} must be an object (e.g. {{runAsUser: 1000}}): fix it")
            env = _named_items(c.get("env"), f"{field}[{i}].env", "env vars")
            for j, e in enumerate(env):
                if _reserved_env(str(e["name"])):
                    at = f"{field}[{i}].env[{j}].name"
                    _fail(at, at + MSG_ENV.format(list=list_name).split("env[].name", 1)[1])
            mounts = _list_of_maps(c.get("volumeMounts"), f"{field}[{i}].volumeMounts")
            for j, m in enumerate(mounts):
                if m.get("mountPath") == "/dev/shm" and m.get("name") != "dshm":
                    at = f"{field}[{i}].volumeMounts[{j}].mountPath"
                    _fail(
                        at,
                        MSG_SHM_MOUNT.format(list=list_name).replace(
                            f"{field}[].volumeMounts[].mountPath", at
                        ),
                    )
    if not allow_privileged:
        _check_unprivileged(spec, volumes)


def _check_unprivileged(spec: Mapping[str, Any], volumes: list[Mapping[str, Any]]) -> None:
    def refuse(field: str, what: str) -> None:
        _fail(field, f"{field}: {what} is not allowed: {ALLOW_PRIVILEGED_HINT}; remove it")

    for key in PRIVILEGED_POD_FIELDS:
        if spec.get(key):
            refuse(f"{P}.spec.{key}", f"{key}: true")
    for i, v in enumerate(volumes):
        if "hostPath" in v:
            refuse(f"{P}.spec.volumes[{i}].hostPath", "a hostPath volume")
    for list_name in (*CONTAINER_LISTS, "ephemeralContainers"):
        items = spec.get(list_name)
        if not isinstance(items, list):
            continue
        for i, c in enumerate(items):
            if not isinstance(c, Mapping):
                continue
            at = f"{P}.spec.{list_name}[{i}]"
            sc = c.get("securityContext")
            if isinstance(sc, Mapping):
                if sc.get("privileged"):
                    refuse(f"{at}.securityContext.privileged", "a privileged container")
                if sc.get("allowPrivilegeEscalation"):
                    refuse(f"{at}.securityContext.allowPrivilegeEscalation", "privilege escalation")
                caps = sc.get("capabilities")
                if isinstance(caps, Mapping) and caps.get("add"):
                    refuse(f"{at}.securityContext.capabilities.add", "adding capabilities")
            ports = c.get("ports")
            if isinstance(ports, list):
                for j, port in enumerate(ports):
                    if isinstance(port, Mapping) and port.get("hostPort"):
                        refuse(f"{at}.ports[{j}].hostPort", "a hostPort")
