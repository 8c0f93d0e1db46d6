"""The `kubetrain` command (also `kubectl kubetrain`): submit, follow and steer TrainingJobs.

Every command is a thin layer over `kubetrain.client`; output is a table for people or
`-o json|yaml` for scripts, and the exit status says what happened (see EXIT_CODES).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from kubetrain.cli.render import age, dump, section, table

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1  # anything unexpected (API unreachable, ...)
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_NOT_FOUND = 3  # no such job / pod
EXIT_JOB_FAILED = 4  # the job ended Failed (submit --wait, wait)
EXIT_TIMEOUT = 5  # --timeout passed first
EXIT_INVALID = 6  # the spec is invalid (dry-run errors, rejected by the API server)
EXIT_DOCTOR = 7  # doctor found a problem
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  success                     {EXIT_NOT_FOUND}  job or pod not found
  {EXIT_ERROR}  unexpected error            {EXIT_JOB_FAILED}  the job failed
  {EXIT_USAGE}  bad command line            {EXIT_TIMEOUT}  timed out waiting
                                 {EXIT_INVALID}  invalid spec
                                 {EXIT_DOCTOR}  doctor found problems"""

EXAMPLES = f"""examples:
  kubetrain submit -f job.yaml --follow          create and follow the interruption timeline
  kubetrain submit --name llama --image repo/train:1.4 --nodes 4 \\
      --instance-type p5.48xlarge --capacity spot --checkpoint-s3 s3://b/llama \\
      --dry-run -- python train.py               the pods it would get and extra checks
  kubetrain get                                  all jobs in the namespace
  kubetrain describe llama                       conditions, interruptions, pods, events
  kubetrain logs llama --rank 1 --previous       rank 1 of the attempt before the current one
  kubetrain checkpoint llama                     checkpoint now, wait for the commit
  kubetrain checkpoints llama                    newest first; which one a resume loads
  kubetrain suspend llama / resume llama / delete llama
  kubetrain doctor --instance-type p5.48xlarge   is this cluster ready for the job?
  kubectl kubetrain get -n ml                    the same, as a kubectl plugin

{EXIT_CODES}"""


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# --- parser ----------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")


def build_parser(prog: str = "kubetrain") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Submit, follow and steer kubetrain TrainingJobs on Kubernetes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, epilog: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=(epilog + "\n\n" if epilog else "") + EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        return p

    p = command(
        "submit",
        "create a TrainingJob from a file or from flags",
        "examples:\n  kubetrain submit -f job.yaml --wait --timeout 7200\n"
        "  kubetrain submit --name demo --image repo/train:1 --instance-type g5.12xlarge "
        "-- python train.py\n  kubetrain submit -f job.yaml --dry-run -o yaml   # the pods, no cluster",
    )
    p.add_argument("-f", "--filename", help="TrainingJob YAML/JSON file ('-' for stdin)")
    p.add_argument("--name", help="metadata.name (overrides the file's)")
    p.add_argument("--image")
    p.add_argument("--nodes", type=int)
    p.add_argument("--instance-type")
    p.add_argument("--accelerator", choices=("nvidia", "neuron", "none"))
    p.add_argument("--per-node", type=int, help="accelerators per node")
    p.add_argument("--launcher", choices=("torchrun", "mpirun", "none"))
    p.add_argument("--capacity", choices=("any", "spot", "on-demand", "spot-then-on-demand"))
    p.add_argument("--zone")
    p.add_argument("--fsx-claim", help="an existing FSx for Lustre PVC, mounted at --fsx-mount")
    p.add_argument("--fsx-mount", default=None)
    p.add_argument("--checkpoint-dir")
    p.add_argument("--checkpoint-s3", help="s3://bucket/prefix mirror of the checkpoints")
    p.add_argument("--max-restarts", type=int)
    p.add_argument("--max-interruptions", type=int)
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--dry-run", action="store_true", help="print the pods and checks; no cluster")
    p.add_argument("--wait", action="store_true", help="wait until it succeeds or fails")
    p.add_argument("--follow", action="store_true", help="--wait, printing the timeline")
    p.add_argument("--timeout", type=float, help="seconds to wait (with --wait/--follow)")
    p.add_argument("command_", nargs="*", metavar="-- COMMAND", help="the training command")
    _output(p)

    p = command("get", "list TrainingJobs, or show one")
    p.add_argument("name", nargs="?")
    _output(p)

    p = command("describe", "status, conditions, interruption timeline, pods and events")
    p.add_argument("name")
    _output(p)

    p = command("wait", "wait until a job succeeds or fails, printing its timeline")
    p.add_argument("name")
    p.add_argument("--timeout", type=float)
    p.add_argument("--for", dest="for_", default="", metavar="PHASE", help="wait for this phase")

    p = command(
        "logs",
        "logs of one rank's worker",
        "examples:\n  kubetrain logs llama --rank 1 -f\n  kubetrain logs llama --rank 1 --previous"
        "\n  kubetrain logs llama --attempt 2 --tail 100",
    )
    p.add_argument("name")
    p.add_argument("--rank", type=int, default=0)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--attempt", type=int, help="attempt number (default: the newest)")
    group.add_argument("-p", "--previous", action="store_true", help="the attempt before this one")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, help="last N lines")
    p.add_argument(
        "--log-group",
        help="CloudWatch log group with the container logs (Fluent Bit / Container Insights), "
        "read when the pod is gone; default $KUBETRAIN_LOG_GROUP",
    )

    p = command(
        "checkpoints",
        "committed checkpoints, newest first, and the one a resume would load",
        "The cluster's view (status, pod annotations) plus, when reachable from here, the\n"
        "store itself: spec.checkpoint.s3Uri (boto3) or a checkpoint directory mounted locally.",
    )
    p.add_argument("name")
    p.add_argument("--store", help="read manifests here instead (s3://... or a local directory)")
    p.add_argument("--no-store", action="store_true", help="only what the cluster reports")
    _output(p)

    p = command("checkpoint", "request a checkpoint now (training continues) and wait for it")
    p.add_argument("name")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=600)
    _output(p)

    for name, help_ in (
        ("suspend", "checkpoint and release the nodes (spec.suspend=true)"),
        ("resume", "start a suspended job again from its checkpoint"),
        ("delete", "delete a job and its pods"),
    ):
        p = command(name, help_)
        p.add_argument("name")
        if name == "delete":
            p.add_argument("--wait", action="store_true", help="until the job is gone")

    p = command(
        "doctor",
        "check the cluster: CRD, operator, device plugins, EFA, spot notices, labels",
    )
    p.add_argument(
        "--instance-type", action="append", default=[], help="check these node types (repeat)"
    )
    _output(p)
    return parser


# --- commands --------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from kubetrain.client import TrainingJobClient

    return TrainingJobClient(args.namespace, kubeconfig=args.kubeconfig, context=args.context)


def _load_manifest(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    manifest: dict[str, Any] = {
        "apiVersion": "kubetrain.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {},
        "spec": {},
    }
    if args.filename:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise CliError(f"{args.filename}: not a TrainingJob object", EXIT_INVALID)
        manifest = loaded
        manifest.setdefault("metadata", {})
        manifest.setdefault("spec", {})
    meta, spec = manifest["metadata"], manifest["spec"]
    if args.name:
        meta["name"] = args.name
    if args.namespace:
        meta["namespace"] = args.namespace
    for flag, key in (("image", "image"), ("nodes", "nodes"), ("launcher", "launcher")):
        if getattr(args, flag) is not None:
            spec[key] = getattr(args, flag)
    if args.command_:
        spec["command"] = list(args.command_)
    accel = (
        spec.setdefault("accelerator", {})
        if (args.instance_type or args.accelerator or args.per_node)
        else None
    )
    if accel is not None:
        if args.accelerator:
            accel["kind"] = args.accelerator
        if args.instance_type:
            accel["instanceType"] = args.instance_type
            if "kind" not in accel:
                from kubetrain.profiles import lookup

                profile = lookup(args.instance_type)
                accel["kind"] = profile.accelerator_kind if profile else "nvidia"
        if args.per_node:
            accel["perNode"] = args.per_node
    if args.capacity or args.zone:
        cap = spec.setdefault("capacity", {})
        if args.capacity:
            cap["type"] = args.capacity
        if args.zone:
            cap["zone"] = args.zone
    if args.fsx_claim:
        fsx: dict[str, Any] = {"claimName": args.fsx_claim}
        if args.fsx_mount:
            fsx["mountPath"] = args.fsx_mount
        spec.setdefault("storage", {})["fsx"] = fsx
    if args.checkpoint_dir or args.checkpoint_s3:
        ckpt = spec.setdefault("checkpoint", {})
        if args.checkpoint_dir:
            ckpt["dir"] = args.checkpoint_dir
        if args.checkpoint_s3:
            ckpt["s3Uri"] = args.checkpoint_s3
    if args.max_restarts is not None or args.max_interruptions is not None:
        policy = spec.setdefault("failurePolicy", {})
        if args.max_restarts is not None:
            policy["maxRestarts"] = args.max_restarts
        if args.max_interruptions is not None:
            policy["maxInterruptions"] = args.max_interruptions
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--env {item!r}: use NAME=VALUE", EXIT_USAGE)
        env = [e for e in spec.get("env") or [] if e.get("name") != key]
        spec["env"] = [*env, {"name": key, "value": value}]
    if not meta.get("name"):
        raise CliError("the job needs a name: --name or metadata.name in the file", EXIT_USAGE)
    return manifest


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    manifest = _load_manifest(args)
    if args.dry_run:
        from kubetrain.cli.dryrun import plan, pod_summary

        manifest["metadata"].setdefault("namespace", args.namespace or "default")
        result = plan(manifest)
        if args.output != "table":
            dump(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": result.objects,
                    "checks": [c.as_dict() for c in result.checks],
                },
                args.output,
                out,
            )
        else:
            if result.pods:
                table(
                    [pod_summary(p) for p in result.pods],
                    ["pod", "nodes", "resources", "command"],
                    out,
                )
            for check in result.checks:
                out.write(f"{check.level}: {check.message}\n")
            if result.ok:
                out.write(f"ok: {len(result.pods)} pod(s) per attempt; nothing was created\n")
        return EXIT_OK if result.ok else EXIT_INVALID
    from kubetrain.client import Rejected

    tj = _client(args)
    try:
        job = tj.create(manifest)
    except Rejected as exc:
        raise CliError(str(exc), EXIT_INVALID) from exc
    out.write(f"trainingjob.kubetrain.dev/{job.name} created in {job.namespace}\n")
    if args.wait or args.follow:
        return _follow(tj, job.name, args.timeout, out, quiet=not args.follow)
    return EXIT_OK


def _follow(
    tj: Any, name: str, timeout: float | None, out: TextIO, *, quiet: bool = False, phase: str = ""
) -> int:
    from kubetrain.client import JobFailed, WaitTimeout

    def line(text: str) -> None:
        if not quiet:
            from datetime import UTC, datetime

            out.write(f"{datetime.now(UTC):%H:%M:%S} {text}\n")
            out.flush()

    until = (lambda j: j.phase == phase) if phase else None
    try:
        job = tj.wait(name, timeout=timeout, on_change=line, until=until, poll=1.0)
    except JobFailed as exc:
        out.write(f"{exc}\n")
        return EXIT_JOB_FAILED
    except WaitTimeout as exc:
        out.write(f"{exc}\n")
        return EXIT_TIMEOUT
    out.write(f"{name}: {job.phase}\n")
    return EXIT_OK


def _job_row(job: Any) -> list[object]:
    step = job.checkpoint.step if job.checkpoint else ""
    return [
        job.name,
        job.phase,
        f"{job.nodes_ready}/{job.nodes_total}",
        job.attempt,
        job.failures + job.interruptions_count,
        step,
        age(str(job.raw.get("metadata", {}).get("creationTimestamp", ""))),
    ]


JOB_COLUMNS = ["name", "phase", "ready", "attempt", "restarts", "checkpoint", "age"]


def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    tj = _client(args)
    jobs = [tj.get(args.name)] if args.name else tj.list_jobs()
    if args.output != "table":
        raws = [j.raw for j in jobs]
        dump(
            raws[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": raws},
            args.output,
            out,
        )
        return EXIT_OK
    if not jobs:
        out.write(f"No TrainingJobs in {tj.namespace}.\n")
        return EXIT_OK
    table([_job_row(j) for j in jobs], JOB_COLUMNS, out)
    return EXIT_OK


def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    tj = _client(args)
    job = tj.get(args.name)
    pods, events = tj.pods(args.name), tj.events(args.name)
    if args.output != "table":
        dump(
            {"job": job.raw, "pods": [p.__dict__ for p in pods], "events": events}, args.output, out
        )
        return EXIT_OK
    spec = job.spec
    accel = spec.get("accelerator") or {}
    out.write(
        f"Name:        {job.name}\nNamespace:   {job.namespace}\nPhase:       {job.phase}"
        f"{' (suspended)' if job.suspended else ''}\nAttempt:     {job.attempt}\n"
        f"Nodes:       {job.nodes_ready}/{job.nodes_total} ready"
        f"  {accel.get('instanceType', accel.get('kind', ''))}"
        f"  capacity {(spec.get('capacity') or {}).get('type', 'any')}\n"
        f"Restarts:    {job.failures} failures, {job.interruptions_count} interruptions\n"
    )
    if job.checkpoint:
        c = job.checkpoint
        out.write(f"Checkpoint:  step {c.step} ({c.kind}) {c.uri}\n")
    goodput = job.goodput()
    if goodput is not None:
        split = ", ".join(f"{k} {v:.0f}s" for k, v in job.time_split().items() if v)
        out.write(f"Goodput:     {goodput:.1%} of wall time productive ({split})\n")
    if job.message:
        out.write(f"Message:     {job.message}\n")
    section("Conditions", out)
    table(
        [
            [c.type, c.status, c.reason, age(c.last_transition_time), c.message]
            for c in job.conditions
        ],
        ["type", "status", "reason", "age", "message"],
        out,
    )
    section("Interruptions", out)
    if job.interruptions:
        table(
            [
                [
                    i.attempt,
                    i.node,
                    i.source,
                    i.detected_at,
                    i.committed_at or "-",
                    "-" if i.checkpoint_step is None else i.checkpoint_step,
                    "-" if i.lost_steps is None else i.lost_steps,
                    i.resumed_at or "not yet",
                ]
                for i in job.interruptions
            ],
            ["attempt", "node", "source", "detected", "committed", "step", "lost", "resumed"],
            out,
        )
    else:
        out.write("  none\n")
    section("Pods", out)
    table(
        [
            [
                p.name,
                p.attempt,
                p.rank,
                p.phase + (" (deleting)" if p.deleting else ""),
                p.node,
                "" if p.exit_code is None else p.exit_code,
            ]
            for p in pods
        ],
        ["name", "attempt", "rank", "phase", "node", "exit"],
        out,
    )
    section("Events", out)
    table(
        [
            [
                e.get("type", ""),
                e.get("reason", ""),
                age(str(e.get("lastTimestamp") or e.get("eventTime") or "")),
                e.get("message", ""),
            ]
            for e in events[-15:]
        ],
        ["type", "reason", "age", "message"],
        out,
    )
    return EXIT_OK


def cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    return _follow(_client(args), args.name, args.timeout, out, phase=args.for_)


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    tj = _client(args)
    attempt = args.attempt
    if args.previous:
        job = tj.get(args.name)
        if job.attempt <= 1:
            raise CliError(
                f"{args.name} is on attempt {job.attempt}: there is no previous one", EXIT_NOT_FOUND
            )
        attempt = job.attempt - 1
    for line in tj.logs(
        args.name,
        rank=args.rank,
        attempt=attempt,
        follow=args.follow,
        tail_lines=args.tail,
        log_group=args.log_group,
    ):
        out.write(line + "\n")
        if args.follow:
            out.flush()
    return EXIT_OK


def cmd_checkpoints(args: argparse.Namespace, out: TextIO) -> int:
    tj = _client(args)
    job = tj.get(args.name)
    known = tj.checkpoints(args.name)
    location = (
        args.store
        or (job.spec.get("checkpoint") or {}).get("s3Uri")
        or (job.spec.get("checkpoint") or {}).get("dir")
        or ""
    )
    stored: list[Any] = []
    store_note = ""
    if location and not args.no_store:
        from kubetrain.client.store import list_stored, tier_for

        try:
            tier = tier_for(location)
            if tier is None:
                store_note = f"{location} is not reachable from here (mount it, or pass --store)"
            else:
                stored = list_stored(tier)
        except Exception as exc:  # credentials, network: the cluster's view still helps
            store_note = f"reading {location} failed: {exc}"
    if args.output != "table":
        dump(
            {
                "cluster": [c.__dict__ for c in known],
                "store": {
                    "location": location,
                    "checkpoints": [s.as_dict() for s in stored],
                    "note": store_note,
                },
            },
            args.output,
            out,
        )
        return EXIT_OK
    out.write("Reported by the cluster (newest first):\n")
    if known:
        table(
            [[c.step, c.kind, c.attempt or "", c.source, c.id, c.uri] for c in known],
            ["step", "kind", "attempt", "source", "id", "manifest"],
            out,
        )
    else:
        out.write("  none yet\n")
    if location and not args.no_store:
        out.write(f"\nIn {location} (newest first):\n")
        if stored:
            table(
                [
                    [
                        "*" if s.resume else "",
                        s.step,
                        s.kind,
                        "" if s.attempt is None else s.attempt,
                        "complete" if s.complete else f"incomplete: {s.problem}",
                        s.uri,
                    ]
                    for s in stored
                ],
                ["resume", "step", "kind", "attempt", "state", "manifest"],
                out,
            )
            chosen = next((s for s in stored if s.resume), None)
            out.write(
                f"A new attempt resumes from step {chosen.step}.\n"
                if chosen
                else "No complete checkpoint: a new attempt starts from step 0.\n"
            )
        else:
            out.write(f"  {store_note or 'no checkpoints'}\n")
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace, out: TextIO) -> int:
    from kubetrain.client import ClientError, WaitTimeout

    tj = _client(args)
    try:
        ident, ref = tj.request_checkpoint(args.name, wait=not args.no_wait, timeout=args.timeout)
    except WaitTimeout as exc:
        out.write(f"{exc}\n")
        return EXIT_TIMEOUT
    except ClientError as exc:
        raise CliError(str(exc)) from exc
    if args.output != "table":
        dump({"request": ident, "checkpoint": ref.__dict__ if ref else None}, args.output, out)
    elif ref is None:
        out.write(f"checkpoint {ident} requested\n")
    else:
        out.write(f"checkpoint {ident} committed at step {ref.step}: {ref.uri}\n")
    return EXIT_OK


def cmd_suspend(args: argparse.Namespace, out: TextIO) -> int:
    job = _client(args).suspend(args.name)
    out.write(f"{job.name} suspending: the gang checkpoints and releases its nodes\n")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, out: TextIO) -> int:
    job = _client(args).resume(args.name)
    out.write(f"{job.name} resuming from its newest checkpoint\n")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, out: TextIO) -> int:
    from kubetrain.client import NotFound

    tj = _client(args)
    if not tj.delete(args.name, wait=args.wait):
        raise NotFound(f"TrainingJob {tj.namespace}/{args.name} not found")
    out.write(f"trainingjob.kubetrain.dev/{args.name} deleted\n")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from kubetrain.cli import doctor

    tj = _client(args)
    findings = doctor.run(tj.api_client, args.instance_type)
    if args.output != "table":
        dump([f.as_dict() for f in findings], args.output, out)
    else:
        mark = {doctor.OK: "ok  ", doctor.WARN: "warn", doctor.FAIL: "FAIL"}
        for f in findings:
            out.write(f"[{mark[f.status]}] {f.check}: {f.message}\n")
            if f.fix and f.status != doctor.OK:
                out.write(f"       fix: {f.fix}\n")
    return EXIT_DOCTOR if any(f.status == doctor.FAIL for f in findings) else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "submit": cmd_submit,
    "get": cmd_get,
    "describe": cmd_describe,
    "wait": cmd_wait,
    "logs": cmd_logs,
    "checkpoints": cmd_checkpoints,
    "checkpoint": cmd_checkpoint,
    "suspend": cmd_suspend,
    "resume": cmd_resume,
    "delete": cmd_delete,
    "doctor": cmd_doctor,
}


def run(
    argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr, prog: str = "kubetrain"
) -> int:
    args = build_parser(prog).parse_args(list(argv))
    from kubetrain.client import ClientError, NotFound, Rejected  # stdlib-only imports

    try:
        return COMMANDS[args.command](args, out)
    except CliError as exc:
        err.write(f"error: {exc}\n")
        return exc.code
    except NotFound as exc:
        err.write(f"error: {exc}\n")
        return EXIT_NOT_FOUND
    except Rejected as exc:
        err.write(f"error: {exc}\n")
        return EXIT_INVALID
    except ClientError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_ERROR
    except ModuleNotFoundError as exc:  # a runtime-only install (`pip install kubetrain`)
        err.write(f"error: {exc}: this command needs pip install 'kubetrain[cli]'\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # API errors, an unreachable server: one line, not a traceback
        if os.environ.get("KUBETRAIN_DEBUG"):
            raise
        status = getattr(exc, "status", None)
        if status == 404:
            err.write(
                f"error: not found ({getattr(exc, 'reason', '')}): is the CRD installed? "
                "run `kubetrain doctor`\n"
            )
            return EXIT_NOT_FOUND
        detail = f"HTTP {status} {getattr(exc, 'reason', '')}" if status else str(exc)
        err.write(f"error: {type(exc).__name__}: {detail} (KUBETRAIN_DEBUG=1 for a traceback)\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    prog = Path(sys.argv[0]).name
    prog = "kubectl kubetrain" if prog.startswith("kubectl-") else "kubetrain"
    sys.exit(run(sys.argv[1:] if argv is None else argv, prog=prog))
