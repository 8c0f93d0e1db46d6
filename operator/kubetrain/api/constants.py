"""Names shared by the operator, the in-container runtime, the node agent and the tests.

Pure Python on purpose: the runtime imports this module inside training containers, where neither
pydantic nor kopf is installed. Define a name here once; import it everywhere else.
"""

from __future__ import annotations

import enum
from typing import Final

# --- API identity ---------------------------------------------------------------------------------
GROUP: Final = "kubetrain.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainingJob"
PLURAL: Final = "trainingjobs"
SINGULAR: Final = "trainingjob"
SHORT_NAME: Final = "tj"
OPERATOR_NAMESPACE: Final = "kubetrain-system"

# --- Labels on every child object -----------------------------------------------------------------
PREFIX: Final = "kubetrain.dev/"
LABEL_JOB: Final = PREFIX + "job"
LABEL_ATTEMPT: Final = PREFIX + "attempt"
LABEL_RANK: Final = PREFIX + "rank"
LABEL_ROLE: Final = PREFIX + "role"  # "worker" on pods

# --- Gang admission (issue 11, level 1) -----------------------------------------------------------
# Scheduling gate on every pod of an attempt that waits for room for the whole gang: the scheduler
# ignores the pods until the operator removes it (from every pod of the attempt at once).
SCHEDULING_GATE_GANG: Final = PREFIX + "gang"
# Nodes a provisioner adds on demand (Karpenter's NodePool label): room there is not fixed, so a
# gang short of room on them is released for the provisioner to scale (it ignores gated pods).
LABEL_KARPENTER_NODEPOOL: Final = "karpenter.sh/nodepool"

# --- Operator <-> pod checkpoint protocol (annotations on worker pods) -----------------------------
# Operator -> pods: {"id": "...", "reason": "spot-interruption", "deadline": "<RFC3339>"}
ANNOTATION_CHECKPOINT_REQUEST: Final = PREFIX + "checkpoint-request"
# Rank 0 -> operator: {"id": "...", "step": 123, "manifest": "<uri>", "kind": "periodic|emergency"}
ANNOTATION_CHECKPOINT_COMMITTED: Final = PREFIX + "checkpoint-committed"
# Rank 0 of a resumed attempt -> operator: {"step": 40, "previousStep": 47, "lostSteps": 7,
# "manifest": "<uri>", "savedWorldSize": 4, "worldSize": 2}: how far the interrupted attempt had
# got past the checkpoint it resumed from, and which world size wrote that checkpoint.
ANNOTATION_RESUMED: Final = PREFIX + "resumed"

# Reasons carried in a checkpoint request.
REQUEST_REASON_SPOT: Final = "spot-interruption"
REQUEST_REASON_REBALANCE: Final = "rebalance-recommendation"
REQUEST_REASON_NODE_LOST: Final = "node-lost"
REQUEST_REASON_MANUAL: Final = "manual"

# A worker that saved an emergency checkpoint and stopped on purpose exits with this code; the
# operator counts it as an interruption, never as a user failure.
EXIT_CHECKPOINTED_AND_STOPPED: Final = 83

# --- Runtime contract: env vars the operator sets on every worker ---------------------------------
ENV_JOB: Final = "KUBETRAIN_JOB"
ENV_ATTEMPT: Final = "KUBETRAIN_ATTEMPT"
ENV_CHECKPOINT_DIR: Final = "KUBETRAIN_CHECKPOINT_DIR"
ENV_CHECKPOINT_S3_URI: Final = "KUBETRAIN_CHECKPOINT_S3_URI"
ENV_RESUME_MANIFEST: Final = "KUBETRAIN_RESUME_MANIFEST"
ENV_POD_NAME: Final = "KUBETRAIN_POD_NAME"
ENV_POD_NAMESPACE: Final = "KUBETRAIN_POD_NAMESPACE"

# --- Node signals the operator watches -------------------------------------------------------------
TAINT_NTH_SPOT_ITN: Final = "aws-node-termination-handler/spot-itn"
TAINT_NTH_REBALANCE: Final = "aws-node-termination-handler/rebalance-recommendation"
TAINT_NTH_ASG_TERMINATION: Final = "aws-node-termination-handler/asg-lifecycle-termination"
TAINT_NTH_SCHEDULED_MAINTENANCE: Final = "aws-node-termination-handler/scheduled-maintenance"
TAINT_KARPENTER_DISRUPTED: Final = "karpenter.sh/disrupted"
TAINT_OUT_OF_SERVICE: Final = "node.kubernetes.io/out-of-service"
# Set by kubetrain's optional node agent (IMDS poller); value = the notice's action time.
TAINT_KUBETRAIN_SPOT_ITN: Final = PREFIX + "spot-interruption"
TAINT_KUBETRAIN_REBALANCE: Final = PREFIX + "rebalance-recommendation"

# --- Condition types and reasons -------------------------------------------------------------------
# Condition types (status.conditions[].type)
COND_READY: Final = "Ready"  # every rank of the current attempt is running
COND_SUSPENDED: Final = "Suspended"
COND_SUCCEEDED: Final = "Succeeded"
COND_FAILED: Final = "Failed"
COND_CHECKPOINTING: Final = "Checkpointing"

# Reasons
REASON_INVALID_SPEC: Final = "InvalidSpec"

# --- Runtime contract, continued (added by the runtime) --------------------------------------------
# How many committed checkpoints the runtime keeps per tier (spec.checkpoint.keep); default 3.
ENV_CHECKPOINT_KEEP: Final = "KUBETRAIN_CHECKPOINT_KEEP"

# --- Labels, continued (added by the API/builders) -------------------------------------------------
# On the cluster-scoped FSx PersistentVolume, which cannot carry a namespaced owner reference: with
# LABEL_JOB it selects the PV to delete when the job goes (kubetrain.build.fsx_selector).
LABEL_JOB_NAMESPACE: Final = PREFIX + "job-namespace"

# --- Node annotations set by the optional node agent (kubetrain.nodeagent) --------------------------
# The IMDS notice JSON verbatim, next to TAINT_KUBETRAIN_SPOT_ITN / TAINT_KUBETRAIN_REBALANCE:
# spot: {"action": "terminate|stop|hibernate", "time": "<RFC3339>"}; rebalance: {"noticeTime": ...}
ANNOTATION_NODE_SPOT_NOTICE: Final = PREFIX + "spot-notice"
ANNOTATION_NODE_REBALANCE_NOTICE: Final = PREFIX + "rebalance-notice"

# --- Interruption handling, continued (added by the operator's spot handling, issue #4) ----------
# Request reason for an emergency checkpoint that is not a spot reclaim: a cordon/drain, an ASG
# termination, scheduled maintenance, an out-of-service taint or a pod being deleted/disrupted.
REQUEST_REASON_DRAIN: Final = "node-drain"
# Value of "then" in a checkpoint request that asks for a save and more training (no restart).
REQUEST_THEN_CONTINUE: Final = "continue"

# --- Node signals, grouped (the one definition the operator's detection and the zone choice use) --
# Red: the node is going away (emergency checkpoint, then restart elsewhere). In priority order:
# when a node carries several, the first names the source.
RED_INTERRUPTION_TAINTS: Final = (
    TAINT_NTH_SPOT_ITN,
    TAINT_KUBETRAIN_SPOT_ITN,
    TAINT_KARPENTER_DISRUPTED,
    TAINT_NTH_ASG_TERMINATION,
    TAINT_NTH_SCHEDULED_MAINTENANCE,
    TAINT_OUT_OF_SERVICE,
)
# Yellow: a rebalance recommendation (opportunistic checkpoint, training goes on).
YELLOW_INTERRUPTION_TAINTS: Final = (TAINT_NTH_REBALANCE, TAINT_KUBETRAIN_REBALANCE)
INTERRUPTION_TAINTS: Final = frozenset(RED_INTERRUPTION_TAINTS + YELLOW_INTERRUPTION_TAINTS)
# Taints that mean a spot reclaim for certain. Karpenter's `disrupted` taint is not among them: it
# marks every voluntary disruption too (consolidation, drift, expiry, a NodeClaim deleted by hand).
SPOT_INTERRUPTION_TAINTS: Final = frozenset({TAINT_NTH_SPOT_ITN, TAINT_KUBETRAIN_SPOT_ITN})

# --- Capacity types: node labels in both dialects, normalized to "spot" | "on-demand" ------------
CAPACITY_SPOT: Final = "spot"
CAPACITY_ON_DEMAND: Final = "on-demand"
LABEL_KARPENTER_CAPACITY_TYPE: Final = "karpenter.sh/capacity-type"
LABEL_EKS_CAPACITY_TYPE: Final = "eks.amazonaws.com/capacityType"
# label -> label value -> capacity type. Reserved capacity (ODCR, Capacity Blocks) is never
# reclaimed like spot, so it counts as on-demand.
CAPACITY_TYPE_LABELS: Final = {
    LABEL_KARPENTER_CAPACITY_TYPE: {
        "spot": CAPACITY_SPOT,
        "on-demand": CAPACITY_ON_DEMAND,
        "reserved": CAPACITY_ON_DEMAND,
    },
    LABEL_EKS_CAPACITY_TYPE: {
        "SPOT": CAPACITY_SPOT,
        "ON_DEMAND": CAPACITY_ON_DEMAND,
        "CAPACITY_BLOCK": CAPACITY_ON_DEMAND,
    },
}
# spec.capacity.type -> the capacity types its pods may use, most preferred first.
SPEC_CAPACITY_TYPES: Final = {
    "spot": (CAPACITY_SPOT,),
    "on-demand": (CAPACITY_ON_DEMAND,),
    "spot-then-on-demand": (CAPACITY_SPOT, CAPACITY_ON_DEMAND),
}

# --- Values of status.interruptions[].source --------------------------------------------------------
# A node taint's key is a source as it is (e.g. "aws-node-termination-handler/spot-itn"); these are
# the others.
SOURCE_CORDON: Final = "cordon"
SOURCE_POD_DELETION: Final = "pod-deletion"  # a pod got a deletionTimestamp (drain, kubectl delete)
SOURCE_POD_DISRUPTION: Final = "pod-disruption-target"  # DisruptionTarget condition / evicted
SOURCE_POD_DELETED: Final = "pod-deleted"  # a pod of the running attempt is gone from the API
SOURCE_NODE_DELETED: Final = "node-deleted"
SOURCE_NODE_NOT_READY: Final = "node-not-ready"
SOURCE_CHECKPOINTED: Final = "checkpointed-and-stopped"  # exit 83 without a request we sent
SOURCE_SPEC_CHANGE: Final = "spec-change"  # the user edited a field that shapes the pods
SOURCE_RESIZE: Final = "resize"  # an elastic gang grows back to spec.nodes

# Request reason of a coordinated checkpoint-restart for a spec change (not an interruption).
REQUEST_REASON_SPEC_CHANGED: Final = "spec-changed"
# ... and for an elastic gang growing back to spec.nodes (spec.minNodes).
REQUEST_REASON_RESIZE: Final = "resize"

# --- Pod annotations set by the operator ----------------------------------------------------------
# Hash of the spec fields that shape the pods an attempt was built from: no pass mixes two specs.
ANNOTATION_SPEC_HASH: Final = PREFIX + "spec-hash"

# --- Editing a running job --------------------------------------------------------------------------
# spec fields (camelCase) that only steer the operator: an edit applies live. An edit of any other
# field reshapes the pods: the gang checkpoints and restarts with the new spec (reason SpecChanged).
LIVE_SPEC_FIELDS: Final = (
    "failurePolicy",
    "ttlSecondsAfterFinished",
    "suspend",
    "startupTimeoutSeconds",
    "gangBindTimeoutSeconds",
    "checkpointDeadlineSeconds",
    "minNodes",
    "shrinkAfterSeconds",
)

# --- Progress (hang detection) ----------------------------------------------------------------------
# Rank 0 -> operator: {"step": 1200, "time": "<RFC3339>"} (kubetrain.api.protocol.Progress), written
# at most every ENV_PROGRESS_SECONDS (default 30) so a thousand jobs cost the API server little.
ANNOTATION_PROGRESS: Final = PREFIX + "progress"
ENV_PROGRESS_SECONDS: Final = "KUBETRAIN_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS: Final = 30.0

# --- Error surfacing and spec warnings (added by issue 9; written by kubetrain.surface) -----------
# True while reconcile passes keep failing (with the error and the next retry in the message);
# False with reason REASON_RECOVERED once a pass succeeds again.
COND_RECONCILE_ERROR: Final = "ReconcileError"
# True while the spec runs but risks losing work (reason says what, e.g. no durable checkpoints).
COND_SPEC_WARNING: Final = "SpecWarning"
REASON_API_ERROR: Final = "APIError"
REASON_OPERATOR_ERROR: Final = "OperatorError"
REASON_RECOVERED: Final = "Recovered"
REASON_NO_DURABLE_CHECKPOINT: Final = "NoDurableCheckpoint"

# --- Pipelines (added by the KFP launcher, issue 12) ----------------------------------------------
# Set on the job by `eks_training_job(export_uri=...)`: where the training script writes the model
# it exports (e.g. s3://bucket/model.tar.gz); the component's Model output then points there. A
# plain spec.env entry, so not KUBETRAIN_* (names the operator sets are refused at apply).
ENV_EXPORT_URI: Final = "MODEL_EXPORT_URI"

# --- Kueue admission (issue 11, level 2; kubetrain.reconcile.queue) ---------------------------------
# A TrainingJob with this label is queued by Kueue: the operator owns a Workload for it (Kueue's
# "external framework" contract) and creates no pod until Kueue admits that Workload.
LABEL_QUEUE_NAME: Final = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP: Final = "kueue.x-k8s.io"
KUEUE_VERSION: Final = "v1beta2"
KUEUE_API_VERSION: Final = f"{KUEUE_GROUP}/{KUEUE_VERSION}"
WORKLOAD_KIND: Final = "Workload"
WORKLOAD_PLURAL: Final = "workloads"
RESOURCE_FLAVOR_KIND: Final = "ResourceFlavor"
# The value of Kueue's Configuration `integrations.externalFrameworks` for TrainingJobs.
KUEUE_EXTERNAL_FRAMEWORK: Final = "TrainingJob.v1alpha1.kubetrain.dev"
# Set by Kueue's own job controllers on the Workloads they create (jobframework.ConstructWorkload).
KUEUE_LABEL_JOB_UID: Final = "kueue.x-k8s.io/job-uid"
# On each Workload its job controller creates (jobframework.NewWorkload): Kueue keeps counting the
# quota until the controller removes it, once the job's pods are gone.
KUEUE_FINALIZER: Final = "kueue.x-k8s.io/resource-in-use"
# The one pod set of a TrainingJob's Workload: `spec.nodes` worker pods.
WORKLOAD_POD_SET: Final = "workers"
# kubetrain's own condition: True while Kueue's admission of the job's Workload holds.
COND_ADMITTED: Final = "Admitted"
# status.interruptions[].source and request reason when Kueue evicts (preempts) an admitted
# Workload, and when the user sets spec.suspend on a running gang: both stop the gang after a
# checkpoint, like a spot notice, and count against neither restart budget.
SOURCE_QUEUE_EVICTION: Final = "queue-eviction"
SOURCE_SUSPEND: Final = "suspend"
REQUEST_REASON_QUEUE_EVICTION: Final = "queue-eviction"
REQUEST_REASON_SUSPEND: Final = "suspend"

# --- Gang scheduling (issue 11) ---------------------------------------------------------------------


class GangScheduling(enum.Enum):
    """Who keeps an attempt's gang all-or-nothing. Chosen once, when the operator starts
    (kubetrain.handlers.configure), and passed to the builders with every attempt."""

    KUBETRAIN = "kubetrain"  # the operator itself (issue 11 level 1)
    NATIVE = "native"  # the scheduler: one PodGroup per attempt with a gang policy (level 3)


# Kubernetes' native gang scheduling API: alpha in 1.35/1.36, served only where the cluster enables
# the GenericWorkload feature gate and this API version; the scheduler's GangScheduling plugin
# (gate GangScheduling) binds a PodGroup's pods all or none.
PODGROUP_GROUP: Final = "scheduling.k8s.io"
PODGROUP_VERSION: Final = "v1alpha2"
PODGROUP_API_VERSION: Final = f"{PODGROUP_GROUP}/{PODGROUP_VERSION}"
PODGROUP_KIND: Final = "PodGroup"
PODGROUP_PLURAL: Final = "podgroups"
