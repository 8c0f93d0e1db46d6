"""The commit record of one checkpoint, and the names that tie it to its data.

A checkpoint exists only once its manifest exists; the manifest lists every data file with its
size so discovery can tell a complete checkpoint from one whose writer died half way (or whose
mirror has not caught up yet). Paths are relative to the checkpoint root, so the same manifest
is valid on every tier (local disk, FSx, S3).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

MANIFEST_FORMAT = 1
DATA_DIR = "data"
MANIFEST_DIR = "manifests"
Kind = Literal["periodic", "emergency"]
KINDS: tuple[Kind, ...] = ("periodic", "emergency")

_NAME_RE = re.compile(r"^step-(\d{12})-([0-9a-z]{1,32})$")


class ManifestError(ValueError):
    """A manifest that cannot be trusted; discovery skips it, explicit resume hints fail on it."""


def checkpoint_name(step: int, ckpt_id: str) -> str:
    """`step-<12 digits>-<id>`: zero padding keeps listings readable; ordering is numeric anyway."""
    if step < 0 or step >= 10**12:
        raise ValueError(f"step {step} is outside 0..999999999999; checkpoint names hold 12 digits")
    if not _NAME_RE.match(f"step-{0:012d}-{ckpt_id}"):
        raise ValueError(f"checkpoint id {ckpt_id!r} must be 1-32 characters of [0-9a-z]")
    return f"step-{step:012d}-{ckpt_id}"


def new_checkpoint_id() -> str:
    """Eight hex digits: a fresh data directory per save, even when a step is saved twice."""
    return secrets.token_hex(4)


def parse_name(name: str) -> tuple[int, str] | None:
    """(step, id) of a checkpoint name (with or without `.json`); None for anything else."""
    match = _NAME_RE.match(name.removesuffix(".json"))
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def data_dir_of(name: str) -> str:
    return f"{DATA_DIR}/{name}"


def manifest_path_of(name: str) -> str:
    return f"{MANIFEST_DIR}/{name}.json"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the checkpoint root, always under data/<name>/
    size: int


@dataclass(frozen=True)
class Manifest:
    """Fields per the design (reference 5.4); `codec` says how ranks wrote their files."""

    job: str
    attempt: int
    step: int
    kind: Kind
    world_size: int
    files: tuple[FileEntry, ...]
    id: str
    codec: str
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    writer: str = ""
    parent: str | None = None
    format: int = MANIFEST_FORMAT

    @property
    def name(self) -> str:
        return checkpoint_name(self.step, self.id)

    @property
    def data_dir(self) -> str:
        return data_dir_of(self.name)

    @property
    def path(self) -> str:
        return manifest_path_of(self.name)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": self.format,
            "job": self.job,
            "attempt": self.attempt,
            "step": self.step,
            "kind": self.kind,
            "world_size": self.world_size,
            "id": self.id,
            "codec": self.codec,
            "files": [{"path": f.path, "size": f.size} for f in self.files],
            "created_at": self.created_at,
            "writer": self.writer,
            "parent": self.parent,
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, expected_name: str | None = None) -> Manifest:
        """Parse and check a manifest; `expected_name` ties it to the file name it was read from."""
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"not JSON: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise ManifestError("manifest must be a JSON object")
        if doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(
                f"format {doc.get('format')!r} is not {MANIFEST_FORMAT}; written by another "
                "kubetrain version: resume with a matching runtime or pick another checkpoint"
            )
        try:
            manifest = cls(
                job=str(doc["job"]),
                attempt=int(doc["attempt"]),
                step=int(doc["step"]),
                kind=_kind(doc["kind"]),
                world_size=int(doc["world_size"]),
                files=tuple(FileEntry(str(f["path"]), int(f["size"])) for f in doc["files"]),
                id=str(doc["id"]),
                codec=str(doc["codec"]),
                created_at=str(doc["created_at"]),
                writer=str(doc.get("writer", "")),
                parent=None if doc.get("parent") is None else str(doc["parent"]),
            )
            name = manifest.name
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"missing or malformed field: {exc}") from exc
        if expected_name is not None and expected_name.removesuffix(".json") != name:
            raise ManifestError(f"manifest {expected_name!r} describes checkpoint {name!r}")
        prefix = manifest.data_dir + "/"
        for entry in manifest.files:
            if not entry.path.startswith(prefix) or ".." in entry.path.split("/"):
                raise ManifestError(f"file {entry.path!r} lies outside {prefix}")
            if entry.size < 0:
                raise ManifestError(f"file {entry.path!r} has negative size {entry.size}")
        return manifest


def _kind(value: object) -> Kind:
    for kind in KINDS:
        if value == kind:
            return kind
    raise ValueError(f"kind {value!r} is not one of {KINDS}")
