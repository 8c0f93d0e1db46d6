"""`spec.podTemplate`: the user's partial pod, merged onto the generated one last.

Rules, chosen so adding things is easy and replacing things is explicit:
- mappings merge key by key (labels, nodeSelector, resources, securityContext, ...);
- lists of named items merge by name (containers, initContainers, volumes, env; volumeMounts by
  mountPath, ports by containerPort): the `worker` container is extended, a new container is a
  sidecar;
- tolerations, imagePullSecrets, topologySpreadConstraints and hostAliases are appended;
- any other value is replaced by the user's (e.g. `affinity.nodeAffinity` terms, schedulerName);
- a null is no value: it never removes the operator's (a `resources: null` would make the worker
  BestEffort, a `volumes: null` would drop /dev/shm).
`kubetrain.dev/*` labels stay the operator's: it finds its pods by them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubetrain.api.constants import PREFIX

_APPEND = frozenset({"tolerations", "imagePullSecrets", "topologySpreadConstraints", "hostAliases"})
_KEYS = {"volumeMounts": "mountPath", "ports": "containerPort", "volumeDevices": "devicePath"}


def merge_pod_template(pod: dict[str, Any], template: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new pod: `pod` with `template` ({metadata: {labels, annotations}, spec: {...}}) merged."""
    out = copy.deepcopy(pod)
    if not template:
        return out
    meta = template.get("metadata") or {}
    for key in ("labels", "annotations"):
        user = {k: v for k, v in (meta.get(key) or {}).items() if not k.startswith(PREFIX)}
        if user:
            out["metadata"][key] = {**out["metadata"].get(key, {}), **user}
            if key == "labels":  # ours win even if the user tried
                out["metadata"][key].update(pod["metadata"]["labels"])
    if template.get("spec"):
        out["spec"] = _merge(out["spec"], template["spec"], "spec")
    return out


def _merge(ours: Any, theirs: Any, key: str) -> Any:
    if isinstance(ours, dict) and isinstance(theirs, Mapping):
        merged = dict(ours)
        for k, v in theirs.items():
            if v is None:  # null means "not set" (as the API server reads it): keep ours
                continue
            merged[k] = _merge(ours[k], v, k) if k in ours else copy.deepcopy(v)
        return merged
    if isinstance(ours, list) and isinstance(theirs, list):
        if key in _APPEND:
            return ours + [copy.deepcopy(x) for x in theirs if x not in ours]
        by = _KEYS.get(key, "name")
        if all(isinstance(x, Mapping) and by in x for x in [*ours, *theirs]):
            merged_list = list(ours)
            index = {x[by]: i for i, x in enumerate(merged_list)}
            for item in theirs:
                if item[by] in index:
                    i = index[item[by]]
                    merged_list[i] = _merge(merged_list[i], item, key)
                else:
                    index[item[by]] = len(merged_list)
                    merged_list.append(copy.deepcopy(item))
            return merged_list
    return copy.deepcopy(theirs)
