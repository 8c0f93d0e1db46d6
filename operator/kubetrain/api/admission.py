"""The ValidatingAdmissionPolicy that refuses privileged and host-level podTemplates at apply.

Whether they are allowed is the cluster admin's choice, so it cannot live in the CRD. It is one
setting, `allowPrivilegedPods`, rendered from the Helm value into two places: the operator's
ConfigMap (`kubetrain-operator-config`, which the Deployment passes to the operator as
KUBETRAIN_ALLOW_PRIVILEGED_PODS) and the presence of the policy, which is installed only while
the setting is off. The policy takes no `paramKind`: the API server loses a built-in paramKind's
informer for good once no binding names it for a moment (an uninstall, a reinstall, an upgrade
that re-creates the binding), after which a ConfigMap-param policy finds no params and, with
`parameterNotFoundAction: Allow`, lets everything through until the API server restarts
(kubernetes/kubernetes#130887). The operator re-checks every spec at reconcile
(api/podtemplate.check_pod_template) in case the policy is not installed. No webhook server: the
API server evaluates the CEL itself. Generated into the Helm chart
(manifests/charts/kubetrain/templates/admission.yaml, on by default, `admissionPolicy.enabled`) by
`hack/gen_crd.py` (drift-checked); the kustomize base gets it from the chart like the rest of the
operator.
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
                "expression": f"!{_SPEC}.?{key}.orValue(false)",
                "message": _msg(key, f"{key}: true"),
                "reason": "Invalid",
            }
        )
    out.append(
        {
            "expression": f"!{_SPEC}.?volumes.orValue([]).exists(v, has(v.hostPath))",
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
                    "expression": f"!{_SPEC}.?{list_name}.orValue([]).exists(c, {test})",
                    "message": _msg(f"{list_name}[].{field}", what),
                    "reason": "Invalid",
                }
            )
    return out


def config_map(namespace: str = c.OPERATOR_NAMESPACE, allow: str = "false") -> dict[str, Any]:
    """The operator's ConfigMap: the admin's setting, `allow`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": namespace},
        "data": {CONFIG_KEY: allow},
    }


def policy() -> list[dict[str, Any]]:
    """The policy and its binding: installed while privileged podTemplates are not allowed."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POLICY_NAME},
            "spec": {
                "failurePolicy": "Fail",
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
                "validations": _validations(),
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY_NAME},
            "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
        },
    ]
