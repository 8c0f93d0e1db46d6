"""The worker container's command for each launcher.

torchrun uses a static rendezvous (`--master_addr/--master_port/--node_rank`) rather than c10d
rendezvous: the world is fixed per attempt and restarts belong to the operator (`--max_restarts=0`),
so elastic rendezvous would add a timeout and nothing else, while static ranks equal pod ranks
(what logs and the checkpoint protocol talk about). Flags use the underscore
spelling every torchrun release accepts.
"""

from __future__ import annotations

import re
import shlex

from kubetrain.build.env import MASTER_PORT, master_addr
from kubetrain.build.names import JobRef, pod_name, service_name
from kubetrain.build.resolve import Resolved

MPI_SSH_PORT = 22
_PYTHON = re.compile(r"(^|/)python[0-9.]*$")


def completion_ranks(r: Resolved) -> range:
    """Ranks whose exit 0 means success: all of them, except under mpirun where rank 0 runs
    `mpirun` and the others only serve it (sshd) until the operator deletes them."""
    return range(1) if r.spec.launcher == "mpirun" else range(r.nodes)


def _torchrun_target(command: list[str]) -> list[str]:
    """`python train.py` -> `train.py`, `python -m pkg` -> `-m pkg`, else `--no-python <cmd>`."""
    if len(command) >= 2 and _PYTHON.search(command[0]):
        rest = command[1:]
        if (rest[0] == "-m" and len(rest) >= 2) or not rest[0].startswith("-"):
            return rest
    return ["--no-python", *command]


def worker_command(job: JobRef, r: Resolved, attempt: int, rank: int) -> list[str]:
    spec = r.spec
    if spec.launcher == "none":
        return list(spec.command)
    if spec.launcher == "torchrun":
        return [
            "torchrun",
            f"--nnodes={r.nodes}",
            f"--nproc_per_node={r.procs_per_node}",
            f"--node_rank={rank}",
            f"--master_addr={master_addr(job, attempt)}",
            f"--master_port={MASTER_PORT}",
            "--max_restarts=0",
            *_torchrun_target(list(spec.command)),
        ]
    # mpirun: rank 0 waits until every worker's sshd answers, then launches the whole world.
    if rank > 0:
        return ["/usr/sbin/sshd", "-D", "-e", "-p", str(MPI_SSH_PORT)]
    hosts = [f"{pod_name(job.name, attempt, i)}.{service_name(job.name)}" for i in range(r.nodes)]
    wait = (
        f"for h in {' '.join(hosts[1:])}; do "
        f"until (exec 3<>/dev/tcp/$h/{MPI_SSH_PORT}) 2>/dev/null; do sleep 1; done; done; "
        'exec mpirun "$@"'
    )
    return [
        "bash",
        "-c",
        wait,
        "mpirun",
        "--allow-run-as-root",
        "-np",
        str(r.world_size),
        "-H",
        ",".join(f"{h}:{r.procs_per_node}" for h in hosts),
        "--bind-to",
        "none",
        "--map-by",
        "slot",
        *spec.command,
    ]


def describe(command: list[str]) -> str:
    """A shell-quoted rendering for events and logs."""
    return shlex.join(command)
