"""Sealed boxes: X25519 + HKDF + AES-GCM to one epoch's public key, so an edge seals what it cannot open."""

from __future__ import annotations

import itertools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from policy.crypto.errors import SealError
from policy.crypto.ratchet import KEY_BYTES, NONCE_BYTES

BOX_INFO = b"paxsim-sealed-box-v1"
BOX_HEADER = 32 + NONCE_BYTES  # ephemeral public key, nonce


def raw_public(public: X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key (what a box header and the key holder's answer carry)."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _box_cipher(shared: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=BOX_INFO + ephemeral + recipient).derive(shared))


class BoxSender:
    """Seals to one recipient public key (an epoch's): an ephemeral X25519 key made here, HKDF-SHA256 of the
    shared secret, AES-256-GCM. One sender per epoch keeps the cost of a seal at one AES-GCM (the exchange is
    done once); the ephemeral private key lives only in this object and goes with the epoch, and no key-holder
    credential can open the box. Layout: ephemeral public (32) || nonce (12) || ciphertext."""

    __slots__ = ("_eph", "_cipher", "_prefix", "_counter")

    def __init__(self, recipient: X25519PublicKey) -> None:
        eph = X25519PrivateKey.generate()
        self._eph = raw_public(eph.public_key())
        self._cipher = _box_cipher(eph.exchange(recipient), self._eph, raw_public(recipient))
        self._prefix, self._counter = os.urandom(8), itertools.count()

    def seal(self, key_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        n = next(self._counter)
        if n >= 0xFFFFFFFF:
            self._prefix, self._counter = os.urandom(8), itertools.count()
            n = next(self._counter)
        nonce = self._prefix + n.to_bytes(4, "little")
        return self._eph + nonce + self._cipher.encrypt(nonce, plaintext, aad + key_id.encode())


class BoxOpener:
    """Opens boxes sealed to one epoch's key; remembers the cipher per sender (ephemeral key), bounded."""

    __slots__ = ("_key", "_public", "_ciphers")

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key, self._public = key, raw_public(key.public_key())
        self._ciphers: dict[bytes, AESGCM] = {}

    def open(self, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < BOX_HEADER + 16:
            raise SealError("sealed payload too short")
        eph = blob[:32]
        try:
            cipher = self._ciphers.get(eph)
            if cipher is None:
                cipher = _box_cipher(self._key.exchange(X25519PublicKey.from_public_bytes(eph)), eph, self._public)
                if len(self._ciphers) >= 1024:  # senders per epoch are few (one per edge process): a flood is hostile
                    self._ciphers.clear()
                self._ciphers[eph] = cipher
            return cipher.decrypt(blob[32:BOX_HEADER], blob[BOX_HEADER:], aad + key_id.encode())
        except (InvalidTag, ValueError):
            raise SealError(f"payload sealed under {key_id} does not authenticate") from None
