"""Checkpoints as the storage says them: every manifest on a tier, newest first, whether it is
complete, and which one a resume would load (the runtime's own discovery rule, not a copy).

The tier is the job's S3 mirror (`spec.checkpoint.s3Uri`, read with boto3) or its checkpoint
directory when this machine can see it (an FSx mount on a login node, a local path in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetrain.runtime.manifest import ManifestError
from kubetrain.runtime.store import Tier, candidates, load_complete


@dataclass(frozen=True)
class StoredCheckpoint:
    name: str
    step: int
    uri: str
    complete: bool
    kind: str = ""
    attempt: int | None = None
    created_at: str = ""
    problem: str = ""
    resume: bool = False  # the one a new attempt would load

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "uri": self.uri,
            "complete": self.complete,
            "kind": self.kind,
            "attempt": self.attempt,
            "createdAt": self.created_at,
            "problem": self.problem,
            "resume": self.resume,
        }


def tier_for(location: str, s3_client: Any = None) -> Tier | None:
    """A tier for `location` (s3://... or a local directory), or None when not reachable here."""
    if location.startswith("s3://"):
        from kubetrain.runtime.s3 import S3Tier

        return S3Tier(location, client=s3_client)
    if location and Path(location).is_dir():
        from kubetrain.runtime.posix import PosixTier

        return PosixTier(location)
    return None


def list_stored(tier: Tier) -> list[StoredCheckpoint]:
    out: list[StoredCheckpoint] = []
    resume_taken = False
    for candidate in candidates(tier):
        uri = tier.uri(f"manifests/{candidate.name}.json")
        try:
            manifest = load_complete(tier, candidate.name)
        except (ManifestError, ValueError) as exc:
            out.append(
                StoredCheckpoint(candidate.name, candidate.step, uri, False, problem=str(exc))
            )
            continue
        out.append(
            StoredCheckpoint(
                candidate.name,
                candidate.step,
                uri,
                True,
                kind=manifest.kind,
                attempt=manifest.attempt,
                created_at=manifest.created_at,
                resume=not resume_taken,
            )
        )
        resume_taken = True
    return out
