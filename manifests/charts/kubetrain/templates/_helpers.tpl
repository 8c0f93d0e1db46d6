{{/* Names are fixed (kubetrain-operator, kubetrain-node-agent): the RBAC subjects, the README and
the kustomize base all name them, and one kubetrain per cluster is the supported shape. */}}
{{- define "kubetrain.operatorName" -}}kubetrain-operator{{- end -}}
{{- define "kubetrain.nodeAgentName" -}}kubetrain-node-agent{{- end -}}

{{- define "kubetrain.labels" -}}
app.kubernetes.io/part-of: kubetrain
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- if .Release.Service }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end }}
{{- end -}}

{{- define "kubetrain.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Rules the operator needs on namespaced objects, wherever it watches TrainingJobs. */}}
{{- define "kubetrain.namespacedRules" -}}
# The jobs: status through the subresource, the finalizer by patch, delete for ttlSecondsAfterFinished.
- apiGroups: [kubetrain.dev]
  resources: [trainingjobs]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [kubetrain.dev]
  resources: [trainingjobs/status]
  verbs: [get, patch]
# The gang: pods are annotated for checkpoint requests and deleted on restarts.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, delete]
# Per-job children: created once with deterministic names, removed by owner references.
- apiGroups: [""]
  resources: [services, serviceaccounts, persistentvolumeclaims]
  verbs: [create]
# The workers' Role lets them get/list/watch/patch their own pods; granting it needs the same verbs
# on pods above (RBAC escalation check) plus create here.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Kueue (jobs labelled kueue.x-k8s.io/queue-name): the operator creates and owns each such job's
# Workload, keeps its spec.active in step with spec.suspend, and writes its status (Finished; the
# admission cleared once an evicted gang's pods are gone). Unused where Kueue is not installed.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list, watch, create, patch]
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads/status]
  verbs: [patch]
# Native gang scheduling, where the API server serves PodGroups: one per attempt, those of earlier
# attempts deleted when the next is created (the last goes with the job by owner reference).
- apiGroups: [scheduling.k8s.io]
  resources: [podgroups]
  verbs: [create, deletecollection]
{{- end -}}
