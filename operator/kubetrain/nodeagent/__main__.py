"""`python -m kubetrain.nodeagent`: the DaemonSet's entry point (flags, logging, SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from kubetrain.nodeagent.agent import NodeAgent
from kubetrain.nodeagent.imds import DEFAULT_ENDPOINT, DEFAULT_TOKEN_TTL_SECONDS, ImdsClient
from kubetrain.nodeagent.kube import KubeNodeApi


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kubetrain.nodeagent",
        description="Poll IMDSv2 for spot interruption and rebalance notices; taint this Node.",
    )
    parser.add_argument(
        "--imds-endpoint",
        default=os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT,
        help="IMDS base URL (env AWS_EC2_METADATA_SERVICE_ENDPOINT; default %(default)s)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME", ""),
        help="the Node to mark (env NODE_NAME, from the downward API spec.nodeName)",
    )
    parser.add_argument("--token-ttl", type=int, default=DEFAULT_TOKEN_TTL_SECONDS)
    parser.add_argument("--kubeconfig", default=None, help="default: in-cluster, else KUBECONFIG")
    args = parser.parse_args(argv)
    if not args.node_name:
        parser.error(
            "set NODE_NAME (env: valueFrom.fieldRef.fieldPath: spec.nodeName) or --node-name"
        )
    if not args.interval > 0:
        parser.error(f"--interval must be > 0 seconds, got {args.interval}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        imds = ImdsClient(args.imds_endpoint, token_ttl_seconds=args.token_ttl)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("kubetrain.nodeagent").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent = NodeAgent(
        imds=imds,
        nodes=KubeNodeApi(args.kubeconfig),
        node_name=args.node_name,
        interval=args.interval,
    )
    agent.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
