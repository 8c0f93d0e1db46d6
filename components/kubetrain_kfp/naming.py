"""Deterministic job names: the same pipeline run and task always get the same name.

A retried KFP task (set_retry, pod eviction, node scale-down) must find the job its first attempt
started instead of launching and paying for a second one, so names never contain a timestamp or a
random suffix. They are derived from the run id and the task name, hashed, and truncated to the
target service's rules.
"""

from __future__ import annotations

import hashlib
import json
import re

SAGEMAKER_MAX = 63
# TrainingJob names become label values, Service names (DNS-1035: starts with a letter) and the
# prefix of pod names `<job>-<attempt>-<rank>`; 48 leaves room for those suffixes within 63.
K8S_MAX = 48
_HASH_LEN = 10


def short_hash(*parts: str, length: int = _HASH_LEN) -> str:
    """A stable lowercase hex digest of `parts` (joined unambiguously)."""
    digest = hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()
    return digest[:length]


def spec_hash(obj: object) -> str:
    """Hash of a JSON-able request/spec, to tell a reattach from a name collision."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slug(text: str, allowed: str) -> str:
    text = re.sub(allowed, "-", text.lower())
    return re.sub("-+", "-", text).strip("-")


def _compose(prefix: str, task: str, digest: str, max_len: int) -> str:
    room = max_len - len(prefix) - len(digest) - 2
    task = task[: max(room, 0)].strip("-")
    name = "-".join(p for p in (prefix, task, digest) if p)
    return name if len(name) <= max_len else f"{prefix[: max_len - len(digest) - 1]}-{digest}"


def _check_seed(run_id: str, task_name: str) -> None:
    if not run_id.strip() or "{{$" in run_id:
        raise ValueError(
            "input 'run_id' is empty or an unresolved placeholder: pass "
            "dsl.PIPELINE_JOB_ID_PLACEHOLDER (or set 'job_name' explicitly)"
        )
    if "{{$" in task_name:
        raise ValueError(
            "input 'task_name' is an unresolved placeholder: pass "
            "dsl.PIPELINE_TASK_NAME_PLACEHOLDER (or set 'job_name' explicitly)"
        )


def sagemaker_name(prefix: str, run_id: str, task_name: str, max_len: int = SAGEMAKER_MAX) -> str:
    """A SageMaker name: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ (tuning jobs allow only 32)."""
    _check_seed(run_id, task_name)
    prefix = _slug(prefix, r"[^a-z0-9]") or "kfp"
    task = _slug(task_name, r"[^a-z0-9]")
    return _compose(prefix[:16], task, short_hash(run_id, task_name), max_len)


def k8s_name(prefix: str, run_id: str, task_name: str) -> str:
    """A TrainingJob name: DNS-1035 label (starts with a letter), at most K8S_MAX characters."""
    _check_seed(run_id, task_name)
    prefix = _slug(prefix, r"[^a-z0-9]") or "kt"
    if not prefix[0].isalpha():
        prefix = "kt-" + prefix
    task = _slug(task_name, r"[^a-z0-9]")
    return _compose(prefix[:12], task, short_hash(run_id, task_name), K8S_MAX)


def label_value(text: str) -> str:
    """A valid Kubernetes label value (<= 63, alphanumeric at both ends) derived from `text`."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63]
    return value.strip("-_.")
