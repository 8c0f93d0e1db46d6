"""kubetrain's optional node agent: polls IMDSv2 for spot signals and marks its own Node.

Why it exists: Karpenter and NTH queue mode see interruptions through EventBridge, but clusters
without either (or with NTH's taints turned off, its default) give the operator no node-level
signal before the two-minute clock runs out. The agent runs as a hostNetwork DaemonSet on spot
nodes (IMDSv2 hop limit 1 on AL2023 keeps token requests from pod networks out), turns the IMDS
notice into a taint + annotation on its Node, and leaves every decision to the operator.

Modules: `notices` (pure parsing and patch construction), `imds` (stdlib IMDSv2 client),
`kube` (the agent's only door to the API: get/patch its Node), `agent` (the poll loop),
`__main__` (CLI, signals).
"""
