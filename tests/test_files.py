"""The one write used for keys, tokens and snapshots: owner-only, atomic, no temporary file left behind."""

from __future__ import annotations

import stat
from pathlib import Path

from core.files import write_private


def test_write_private_replaces_the_file_whole_and_only_its_owner_may_read_it(tmp_path: Path):
    path = tmp_path / "sub" / "secret.bin"
    assert write_private(path, b"first") == 5
    path.chmod(0o644)  # a file someone loosened: the next write puts a fresh 0600 one in its place
    big = bytes(range(256)) * 40_000  # several write() calls' worth
    assert write_private(path, big) == len(big)
    assert path.read_bytes() == big
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.bin"]
