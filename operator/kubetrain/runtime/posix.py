"""The POSIX tier (local NVMe, FSx for Lustre): the emergency and periodic checkpoint home.

Durability order matters more than speed here: data files are fsynced and their directories
fsynced before the manifest exists, and the manifest appears by rename of a fsynced temp file,
followed by an fsync of `manifests/`. A crash at any point leaves either the old set of
checkpoints or the old set plus the new one, never a manifest pointing at missing bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from kubetrain.runtime.store import AlreadyCommitted


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, payload: bytes) -> int:
    """Write a whole file and fsync it (not its directory: callers fsync the tree once)."""
    with open(path, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    return len(payload)


def fsync_tree(root: Path) -> None:
    """fsync every directory under `root` (inclusive) so new entries survive a crash."""
    for dirpath, _dirnames, _files in os.walk(root):
        fsync_dir(Path(dirpath))


class PosixTier:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"PosixTier({str(self.root)!r})"

    def uri(self, path: str = "") -> str:
        return str(self.root / path) if path else str(self.root)

    def local_path(self, path: str) -> Path:
        return self.root / path

    def make_data_dir(self, directory: str) -> Path:
        """Create a fresh data directory; an existing one is an error, never reused."""
        target = self.root / directory
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir(exist_ok=False)
        return target

    def list_names(self, top: str) -> list[str]:
        try:
            return os.listdir(self.root / top)
        except FileNotFoundError:
            return []

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def sizes_under(self, directory: str) -> dict[str, int]:
        base = self.root / directory
        sizes: dict[str, int] = {}
        for dirpath, _dirnames, files in os.walk(base):
            for fname in files:
                full = Path(dirpath) / fname
                with contextlib.suppress(FileNotFoundError):
                    sizes[full.relative_to(self.root).as_posix()] = full.stat().st_size
        return sizes

    def create(self, path: str, payload: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise AlreadyCommitted(f"{target} exists; manifests are never overwritten")
        # Hidden temp name with the pid: never matches the manifest pattern, never collides.
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        write_durably(tmp, payload)
        os.rename(tmp, target)
        fsync_dir(target.parent)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / path).unlink()
        fsync_dir((self.root / path).parent)

    def delete_tree(self, directory: str) -> None:
        shutil.rmtree(self.root / directory, ignore_errors=True)
