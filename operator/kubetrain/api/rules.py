"""Spec rules that need more than one field's schema, each written twice from one place: as a CEL
expression for the CRD (checked at `kubectl apply`) and as Python for the operator's parse.

Also the instance-type rules: the accelerators, EFA devices, vCPUs and memory of every instance
type in `kubetrain.profiles`, generated into CEL map literals so the API server refuses a job that
asks an instance for more than it has, without a webhook server. `make generate` regenerates the
CRD from here; the drift test fails when profiles.py changed and the CRD did not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubetrain.profiles import PROFILES

# --- strings ---------------------------------------------------------------------------------------
# An image reference in ASCII without spaces: registry/repo[:tag][@digest].
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
NOT_BLANK = "[!-~]"  # at least one visible ASCII character
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# --- S3 URIs: the bucket naming rules of https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
_S3_BAD = (
    r"^s3://[^/]*([.][.]|[.]-|-[.])",  # adjacent periods, period next to a hyphen
    r"^s3://[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+(/|$)",  # formatted as an IP address
    r"^s3://(xn--|sthree-|amzn-s3-demo-)",  # reserved prefixes
    r"^s3://[^/]*(-s3alias|--ol-s3|--x-s3|--table-s3)(/|$)",  # reserved suffixes
)
S3_URI_RULE = f"self.matches('{S3_URI_PATTERN}')" + "".join(
    f" && !self.matches('{bad}')" for bad in _S3_BAD
)


def s3_uri_ok(uri: str) -> bool:
    return re.match(S3_URI_PATTERN, uri) is not None and not any(
        re.match(bad, uri) for bad in _S3_BAD
    )


# --- paths -----------------------------------------------------------------------------------------
ABSOLUTE_PATH_RULE = (
    "self.startsWith('/') && !self.contains('//') && !self.matches('(^|/)[.][.]?(/|$)')"
)
_SYSTEM_DIRS = ("/", "/bin", "/etc", "/lib", "/lib64", "/sbin", "/usr", "/var/run", "/run")
MOUNT_PATH_RULE = (
    ABSOLUTE_PATH_RULE
    + " && !(self in ["
    + ", ".join(f"'{d}'" for d in _SYSTEM_DIRS)
    + "]) && !self.matches('^/(dev|proc|sys)(/|$)')"
)


def absolute_path_ok(path: str) -> bool:
    return (
        path.startswith("/") and "//" not in path and re.search(r"(^|/)[.][.]?(/|$)", path) is None
    )


def mount_path_ok(path: str) -> bool:
    return (
        absolute_path_ok(path)
        and path.rstrip("/") not in _SYSTEM_DIRS
        and path not in _SYSTEM_DIRS
        and re.match(r"^/(dev|proc|sys)(/|$)", path) is None
    )


def path_within(path: str, mount: str) -> bool:
    """`path` is `mount` or below it (string prefix on whole segments, as the kubelet mounts)."""
    prefix = mount if mount.endswith("/") else mount + "/"
    return path == mount or path.startswith(prefix)


def _within_cel(path: str, mount: str) -> str:
    return (
        f"({path} == {mount} || {path}.startsWith({mount}.endsWith('/') ? {mount} : {mount} + '/'))"
    )


CHECKPOINT_DIR_MOUNTED_RULE = (
    "!has(self.checkpoint.dir) || "
    "(has(self.storage.fsx) && "
    + _within_cel("self.checkpoint.dir", "self.storage.fsx.mountPath")
    + ") || (has(self.podTemplate) && has(self.podTemplate.spec) && "
    "has(self.podTemplate.spec.containers) && self.podTemplate.spec.containers.exists(c, "
    "c.name == 'worker' && has(c.volumeMounts) && c.volumeMounts.exists(m, has(m.mountPath) && "
    + _within_cel("self.checkpoint.dir", "m.mountPath")
    + ")))"
)


# --- quantities ------------------------------------------------------------------------------------
def quantity(maximum: str) -> str:
    """CEL for an int-or-string quantity above zero and at most `maximum`."""
    return (
        f"type(self) == int ? (self >= 1 && quantity(string(self)).compareTo(quantity('{maximum}')) <= 0) : "
        f"(isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && "
        f"quantity(self).compareTo(quantity('{maximum}')) <= 0)"
    )


# --- instance types --------------------------------------------------------------------------------
_T = (
    "(self.accelerator.instanceType.startsWith('ml.') ? "
    "self.accelerator.instanceType.substring(3) : self.accelerator.instanceType)"
)


def _map(values: dict[str, Any]) -> str:
    def lit(v: Any) -> str:
        return f"'{v}'" if isinstance(v, str) else str(v)

    return "{" + ", ".join(f"'{k}': {lit(v)}" for k, v in sorted(values.items())) + "}"


def instance_rules() -> list[dict[str, str]]:
    """CEL rules on the spec that hold a job to its instance type's profile (known types only)."""
    kinds = _map({n: p.accelerator_kind for n, p in PROFILES.items()})
    accs = _map({n: p.accelerators for n, p in PROFILES.items()})
    efas = _map({n: p.efa_interfaces for n, p in PROFILES.items()})
    vcpus = _map({n: p.vcpu for n, p in PROFILES.items()})
    mems = _map({n: p.memory_gib for n, p in PROFILES.items()})
    vcpu_q = _map({n: str(p.vcpu) for n, p in PROFILES.items()})
    mem_q = _map({n: f"{p.memory_gib}Gi" for n, p in PROFILES.items()})
    known = f"has(self.accelerator.instanceType) && {_T} in {kinds}"
    cpu, mem = "self.resources.cpu", "self.resources.memory"
    return [
        {
            "rule": f"!({known}) || {kinds}[{_T}] == self.accelerator.kind",
            "messageExpression": f"'spec.accelerator.kind is ' + self.accelerator.kind + ' but ' + "
            f"self.accelerator.instanceType + ' has ' + {kinds}[{_T}] + ' accelerators: set "
            f"spec.accelerator.kind to ' + {kinds}[{_T}]",
            "fieldPath": ".accelerator.kind",
            "message": "spec.accelerator.kind does not match the accelerators of spec.accelerator.instanceType: set it to the instance's kind",
        },
        {
            "rule": f"!({known}) || !has(self.accelerator.perNode) || "
            f"self.accelerator.perNode <= {accs}[{_T}]",
            "fieldPath": ".accelerator.perNode",
            "message": "spec.accelerator.perNode is more than spec.accelerator.instanceType has: lower it or choose a larger instance type",
        },
        {
            "rule": f"!({known}) || type(self.efa.interfaces) == string || "
            f"self.efa.interfaces <= {efas}[{_T}]",
            "fieldPath": ".efa.interfaces",
            "message": "spec.efa.interfaces is more than spec.accelerator.instanceType has: lower it (0 turns EFA off) or use auto",
        },
        {
            "rule": f"!({known}) || !has({cpu}) || (type({cpu}) == int ? {cpu} <= {vcpus}[{_T}] : "
            f"(!isQuantity({cpu}) || quantity({cpu}).compareTo(quantity({vcpu_q}[{_T}])) <= 0))",
            "fieldPath": ".resources.cpu",
            "message": "spec.resources.cpu is more than spec.accelerator.instanceType has: request less, or remove it for the default",
        },
        {
            "rule": f"!({known}) || !has({mem}) || (type({mem}) == int ? "
            f"{mem} <= {mems}[{_T}] * 1073741824 : (!isQuantity({mem}) || "
            f"quantity({mem}).compareTo(quantity({mem_q}[{_T}])) <= 0))",
            "fieldPath": ".resources.memory",
            "message": "spec.resources.memory is more than spec.accelerator.instanceType has: request less, or remove it for the default",
        },
    ]


FailFn = Callable[[str, str], Any]
