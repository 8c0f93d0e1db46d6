"""toy_train.py with one attempt deaf to checkpoint requests, for the missed-deadline drill.

In the attempt named by TOY_DEAF_ATTEMPT the checkpoint agent still reports commits (periodic
checkpoints reach status.checkpoint) but ignores requests, and SIGTERM is not routed to a save:
the gang can never answer, so the operator's deadline must pass. Other attempts are unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import toy_train

from kubetrain.api.constants import ENV_ATTEMPT
from kubetrain.runtime import Checkpointer
from kubetrain.runtime.agent import CheckpointAgent

if os.environ.get(ENV_ATTEMPT) == os.environ.get("TOY_DEAF_ATTEMPT", "1"):
    _from_env = Checkpointer.from_env.__func__  # type: ignore[attr-defined]

    def _deaf_from_env(cls: type[Checkpointer], **kwargs: Any) -> Checkpointer:
        return _from_env(cls, install_signals=False, **kwargs)  # type: ignore[no-any-return]

    def _ignore(self: CheckpointAgent, annotations: dict[str, str]) -> None:
        return None

    Checkpointer.from_env = classmethod(_deaf_from_env)  # type: ignore[assignment,method-assign]
    CheckpointAgent.on_annotations = _ignore  # type: ignore[method-assign]

if __name__ == "__main__":
    toy_train.main()
