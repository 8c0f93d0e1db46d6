"""`python -m kubetrain` with a failpoint, for tests only: the process exits hard (os._exit, no
cleanup) right after its Nth successful create, like an operator killed mid-gang.

    python tests/integration/failpoint_operator.py N [operator args...]

The production create path has no hook: this wraps `Kube.create` before the operator starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from kubetrain import k8s
from kubetrain.__main__ import main

EXIT_CODE = 86


def install(limit: int) -> None:
    create = k8s.Kube.create
    done = 0

    async def create_then_maybe_die(self: k8s.Kube, obj: Mapping[str, Any]) -> bool:
        nonlocal done
        created = await create(self, obj)
        if created:
            done += 1
            if done >= limit:
                os._exit(EXIT_CODE)
        return created

    k8s.Kube.create = create_then_maybe_die  # type: ignore[method-assign]


if __name__ == "__main__":
    install(int(sys.argv[1]))
    main(sys.argv[2:])
