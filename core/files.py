"""Writing state files: one atomic, owner-only write for everything that holds keys, tokens or personal data."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | Path, data: bytes) -> int:
    """Atomically replace ``path`` by a 0600 file holding ``data`` (temporary file, fsync, rename, directory
    fsync: a crash leaves the old file or the new one, never a part). Returns the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: replicas never share a temporary file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)
    return len(data)
