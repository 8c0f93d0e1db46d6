"""Commit, discovery and garbage collection, written once for every storage tier.

A tier only knows how to list, read, size, create and delete objects by relative path; the rules
that make checkpoints safe live here so local disk, FSx and S3 cannot drift apart:

- discovery returns the newest manifest whose listed files all exist with their sizes, and never
  looks at a data directory without a manifest;
- garbage collection deletes a manifest before its data, so an interrupted collection never
  leaves a complete-looking checkpoint with missing files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from kubetrain.runtime.manifest import (
    DATA_DIR,
    Manifest,
    ManifestError,
    manifest_path_of,
    parse_name,
)

log = logging.getLogger(__name__)


class AlreadyCommitted(RuntimeError):
    """A manifest with this name exists: commits are create-only."""


class Tier(Protocol):
    """One storage location holding `data/` and `manifests/` under a root."""

    def uri(self, path: str = "") -> str:
        """A URI a human (or the operator) can use to find `path`."""
        ...

    def list_names(self, top: str) -> list[str]:
        """Entry names directly under `top` (`data` or `manifests`); [] when it does not exist."""
        ...

    def read(self, path: str) -> bytes | None: ...

    def sizes_under(self, directory: str) -> dict[str, int]:
        """Every file below `directory` (recursively) with its size, keyed by root-relative path."""
        ...

    def create(self, path: str, payload: bytes) -> None:
        """Durably create `path`; raise AlreadyCommitted if it exists. Used for manifests."""
        ...

    def delete(self, path: str) -> None: ...

    def delete_tree(self, directory: str) -> None: ...


@dataclass(frozen=True)
class Candidate:
    name: str
    step: int


def candidates(tier: Tier) -> list[Candidate]:
    """Manifest names on the tier, newest step first (ties: name order, deterministic)."""
    found = []
    for entry in tier.list_names("manifests"):
        if not entry.endswith(".json"):
            continue  # temp files of an in-flight commit, `.bad` markers, strangers
        parsed = parse_name(entry)
        if parsed is not None:
            found.append(Candidate(entry.removesuffix(".json"), parsed[0]))
    return sorted(found, key=lambda c: (c.step, c.name), reverse=True)


def load_complete(tier: Tier, name: str) -> Manifest:
    """The manifest `name` if every listed file exists with its listed size; else ManifestError."""
    raw = tier.read(manifest_path_of(name))
    if raw is None:
        raise ManifestError(f"no manifest {tier.uri(manifest_path_of(name))}")
    manifest = Manifest.from_json(raw, expected_name=name)
    present = tier.sizes_under(manifest.data_dir)
    for entry in manifest.files:
        size = present.get(entry.path)
        if size != entry.size:
            seen = "missing" if size is None else f"{size} bytes"
            raise ManifestError(
                f"{tier.uri(entry.path)} is {seen}, manifest says {entry.size} bytes"
            )
    return manifest


def discover(tier: Tier) -> Manifest | None:
    """The newest complete checkpoint on `tier`, or None."""
    for candidate in candidates(tier):
        try:
            return load_complete(tier, candidate.name)
        except ManifestError as exc:
            log.warning("skipping checkpoint %s: %s", candidate.name, exc)
    return None


def commit(tier: Tier, manifest: Manifest) -> str:
    """Write the manifest (the commit point) after checking the data is all there; return its URI."""
    present = tier.sizes_under(manifest.data_dir)
    for entry in manifest.files:
        if present.get(entry.path) != entry.size:
            raise ManifestError(f"refusing to commit {manifest.name}: {entry.path} is incomplete")
    tier.create(manifest.path, manifest.to_json())
    return tier.uri(manifest.path)


def collect_garbage(tier: Tier, keep: int) -> list[str]:
    """Keep the newest `keep` complete checkpoints; delete older manifests (first) and their data.

    Also removes data directories without a manifest that are older than the newest complete
    checkpoint: leftovers of saves killed before their commit. Newer ones may be a save in flight.
    Returns the names removed.
    """
    if keep < 1:
        raise ValueError(f"keep={keep}: at least one checkpoint must be kept")
    kept: list[Candidate] = []
    doomed: list[str] = []
    for candidate in candidates(tier):
        if len(kept) < keep:
            try:
                load_complete(tier, candidate.name)
                kept.append(candidate)
                continue
            except ManifestError:
                if not kept:
                    continue  # newer than every complete one: maybe a mirror still uploading
        doomed.append(candidate.name)
    if not kept:
        return []
    newest = kept[0]
    manifested = {c.name for c in candidates(tier)}
    for name in doomed:
        tier.delete(manifest_path_of(name))  # first: from here on it is not a checkpoint
        tier.delete_tree(f"{DATA_DIR}/{name}")
    for entry in tier.list_names(DATA_DIR):
        parsed = parse_name(entry)
        if parsed is None or entry in manifested:
            continue
        if parsed[0] < newest.step or (parsed[0] == newest.step and entry != newest.name):
            tier.delete_tree(f"{DATA_DIR}/{entry}")
            doomed.append(entry)
    return doomed
