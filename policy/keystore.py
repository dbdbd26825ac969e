"""The key holder's state at rest: one file sealed (AES-256-GCM) under a master key file, both mode 0600.

Without it the key holder keeps everything in memory, and a restart loses every key: whatever was sealed before
becomes unreadable (fail closed). With it (``python -m policy.keyd --state FILE``) a restarted holder comes back
with the same subject keys, the same erasure tombstones (an erased subject can never get a key again, restart or
not) and each chain at its current epoch: an epoch key destroyed before the restart stays destroyed, because only
the ratchet's current position is ever written. The file is replaced atomically (write, fsync, rename) after
every change, before the change is answered.
"""

from __future__ import annotations

import base64
import json
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.files import write_private

MASTER_KEY_BYTES = 32
NONCE_BYTES = 12
AAD = b"paxsim-keyd-state-v1"


class StateFileError(Exception):
    """The state or master key file cannot be used; the message says what to do."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _private(path: Path) -> None:
    """Refuse a key or state file that group or others can read (as ssh does with private keys)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StateFileError(f"{path} has mode {mode:04o}: only its owner may read it (chmod 600 {path})")


def load_master_key(path: Path) -> bytes:
    """The master key in ``path``; a new random one is written (0600) when the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, secrets.token_hex(MASTER_KEY_BYTES).encode())
    _private(path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise StateFileError(f"{path} is not a master key ({MASTER_KEY_BYTES * 2} hex digits)") from None
    if len(key) != MASTER_KEY_BYTES:
        raise StateFileError(f"{path} is not a master key ({MASTER_KEY_BYTES * 2} hex digits)")
    return key


class SealedState:
    """A JSON document kept in ``path``, sealed under the master key in ``master_key_path``."""

    def __init__(self, path: Path, master_key_path: Path) -> None:
        self.path, self.master_key_path = Path(path), Path(master_key_path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(load_master_key(self.master_key_path))

    def load(self) -> dict | None:
        """The saved document, or None when there is none yet. StateFileError when it does not open."""
        if not self.path.exists():
            return None
        _private(self.path)
        blob = self.path.read_bytes()
        try:
            doc = json.loads(self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], AAD))
        except (InvalidTag, ValueError):
            raise StateFileError(
                f"{self.path} does not open with the master key {self.master_key_path}: put the right key file back, "
                f"or move {self.path} away to start with no keys (everything sealed before then stays unreadable)"
            ) from None
        if not isinstance(doc, dict):
            raise StateFileError(f"{self.path} holds no key holder state")
        return doc

    def save(self, doc: dict) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        write_private(self.path, nonce + self._aead.encrypt(nonce, json.dumps(doc).encode(), AAD))
