"""kubetrain's in-container checkpoint library.

    from kubetrain.runtime import Checkpointer
    ckpt = Checkpointer.from_env(every_steps=500)      # dirs, S3 mirror, signals, agent from env
    start = ckpt.restore(state)                        # newest complete checkpoint, in place
    for step in range(start, total_steps):
        train_step(...); ckpt.step(step + 1, state)    # periodic saves; on a notice save, exit 83

Importing this package needs only the standard library: torch, boto3 and the kubernetes client
are imported by the parts that use them, when they are used.
"""

from kubetrain.runtime.checkpointer import Checkpointer
from kubetrain.runtime.collective import Codec, Collective, PerRank, PickleCodec, SingleProcess
from kubetrain.runtime.manifest import FileEntry, Manifest, ManifestError
from kubetrain.runtime.posix import PosixTier
from kubetrain.runtime.s3 import S3Mirror, S3Tier
from kubetrain.runtime.signals import (
    StopFlag,
    StopLevel,
    ignore_stop_signals,
    install_signal_handlers,
)
from kubetrain.runtime.store import AlreadyCommitted, collect_garbage, commit, discover

__all__ = [
    "AlreadyCommitted",
    "Checkpointer",
    "Codec",
    "Collective",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "PerRank",
    "PickleCodec",
    "PosixTier",
    "S3Mirror",
    "S3Tier",
    "SingleProcess",
    "StopFlag",
    "StopLevel",
    "collect_garbage",
    "commit",
    "discover",
    "ignore_stop_signals",
    "install_signal_handlers",
]
