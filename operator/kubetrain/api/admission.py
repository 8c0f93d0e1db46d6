"""The ValidatingAdmissionPolicy that refuses privileged and host-level podTemplates at apply.

Whether they are allowed is the cluster admin's choice, so it cannot live in the CRD: the policy
reads it from the operator's ConfigMap (`kubetrain-operator-config`, key `allowPrivilegedPods`),
the same key the operator's Deployment passes to the operator as KUBETRAIN_ALLOW_PRIVILEGED_PODS,
and the operator re-checks every spec at reconcile (api/podtemplate.check_pod_template) in case
the policy is not installed. No webhook server: the API server evaluates the CEL itself.
Generated into the Helm chart (manifests/charts/kubetrain/templates/admission.yaml, on by default,
`admissionPolicy.enabled`) by `hack/gen_crd.py` (drift-checked); the kustomize base gets it from
the chart like the rest of the operator.
"""

from __future__ import annotations

from typing import Any

from kubetrain.api import constants as c
from kubetrain.api.podtemplate import ALLOW_PRIVILEGED_HINT, CONTAINER_LISTS, PRIVILEGED_POD_FIELDS

POLICY_NAME = "kubetrain-privileged-pod-templates"
CONFIG_MAP = "kubetrain-operator-config"
CONFIG_KEY = "allowPrivilegedPods"

_SPEC = "object.spec.?podTemplate.?spec"


def _msg(field: str, what: str) -> str:
    return (
        f"spec.podTemplate.spec.{field}: {what} is not allowed: {ALLOW_PRIVILEGED_HINT}; remove it"
    )


def _validations() -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for key in PRIVILEGED_POD_FIELDS:
        out.append(
            {
                "expression": f"variables.allowed || !{_SPEC}.?{key}.orValue(false)",
                "message": _msg(key, f"{key}: true"),
                "reason": "Invalid",
            }
        )
    out.append(
        {
            "expression": f"variables.allowed || !{_SPEC}.?volumes.orValue([]).exists(v, "
            "has(v.hostPath))",
            "message": _msg("volumes[].hostPath", "a hostPath volume"),
            "reason": "Invalid",
        }
    )
    checks = (
        (
            "securityContext.privileged",
            "a privileged container",
            "c.?securityContext.?privileged.orValue(false)",
        ),
        (
            "securityContext.allowPrivilegeEscalation",
            "privilege escalation",
            "c.?securityContext.?allowPrivilegeEscalation.orValue(false)",
        ),
        (
            "securityContext.capabilities.add",
            "adding capabilities",
            "size(c.?securityContext.?capabilities.?add.orValue([])) > 0",
        ),
        (
            "ports[].hostPort",
            "a hostPort",
            "c.?ports.orValue([]).exists(p, p.?hostPort.orValue(0) != 0)",
        ),
    )
    for list_name in CONTAINER_LISTS:
        for field, what, test in checks:
            out.append(
                {
                    "expression": f"variables.allowed || !{_SPEC}.?{list_name}.orValue([])"
                    f".exists(c, {test})",
                    "message": _msg(f"{list_name}[].{field}", what),
                    "reason": "Invalid",
                }
            )
    return out


def policy(namespace: str = c.OPERATOR_NAMESPACE, allow: str = "false") -> list[dict[str, Any]]:
    """The ConfigMap (the admin's setting, `allow`), the policy and its binding (to the ConfigMap
    in the operator's `namespace`)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": namespace},
            "data": {CONFIG_KEY: allow},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": {
                "failurePolicy": "Fail",
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [c.GROUP],
                            "apiVersions": [c.VERSION],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [c.PLURAL],
                        }
                    ]
                },
                "variables": [
                    {
                        "name": "allowed",
                        "expression": f"params != null && params.?data.?{CONFIG_KEY}.orValue('') "
                        "== 'true'",
                    }
                ],
                "validations": _validations(),
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": {
                "policyName": POLICY_NAME,
                "paramRef": {
                    "name": CONFIG_MAP,
                    "namespace": namespace,
                    # No ConfigMap: the binding passes; the operator still refuses at reconcile.
                    "parameterNotFoundAction": "Allow",
                },
                "validationActions": ["Deny"],
            },
        },
    ]
