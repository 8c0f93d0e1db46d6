"""`kubetrain-operator` / `python -m kubetrain`: run the operator against the current kubeconfig.

(The `kubetrain` command name belongs to the user CLI; this entry point is the operator only.)

A thin front for `kopf run -m kubetrain.handlers`: all namespaces unless `--namespace` is given,
and any other kopf option (`--standalone`, `--peering`, `--liveness`, `--verbose`, ...) passes
through unchanged, so the Deployment and a developer's shell run exactly the same code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kubetrain.config import ENV_METRICS_ADDRESS, ENV_NAMESPACES

HANDLERS_MODULE = "kubetrain.handlers"
PROG = "kubetrain-operator"
GLOB_CHARACTERS = frozenset("*?[!")


def kopf_args(argv: Sequence[str]) -> list[str]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the kubetrain operator (kopf) against the current kubeconfig. "
        "Options not listed here are passed to `kopf run`.",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; glob patterns allowed); default: all",
    )
    parser.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and the /readyz readiness probe here (default: off)",
    )
    ours, rest = parser.parse_known_args(list(argv))
    if ours.metrics_address:
        # Read by the startup handler (same process): kopf's CLI has no room for our own options.
        os.environ[ENV_METRICS_ADDRESS] = ours.metrics_address
    # The operator's own pod watch follows the same namespaces, one stream each; a glob pattern
    # (kopf's) cannot be watched by name, so the pods are then watched cluster-wide.
    if ours.namespace and not any(GLOB_CHARACTERS & set(ns) for ns in ours.namespace):
        os.environ[ENV_NAMESPACES] = ",".join(ours.namespace)
    else:
        os.environ.pop(ENV_NAMESPACES, None)
    scope = [arg for ns in ours.namespace for arg in ("--namespace", ns)] or ["--all-namespaces"]
    return ["run", *scope, "-m", HANDLERS_MODULE, *rest]


def main(argv: Sequence[str] | None = None) -> None:
    # kopf imports the official Kubernetes client whenever it is installed, only to accept its
    # model objects from handlers; this operator returns none (kubetrain.k8s speaks dicts). Its
    # thousand generated models were 41 MiB of the operator's resident memory (issue 14).
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from kopf.cli import main as kopf_main

    kopf_main.main(args=kopf_args(sys.argv[1:] if argv is None else argv), prog_name=PROG)


if __name__ == "__main__":
    main()
