"""The forward hash ratchet: epoch arithmetic, the chain state a key holder hands out, and the keys derived from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import faults
from policy.crypto.errors import KeyExpired, SealError
from policy.crypto.metrics import SHRED

NONCE_BYTES = 12
KEY_BYTES = 32


def mac(key: bytes | bytearray, label: bytes) -> bytes:
    """HMAC-SHA256 of ``label`` under ``key``: every ratchet step and derived key."""
    return hmac.new(bytes(key), label, hashlib.sha256).digest()


def _wipe(buf: bytearray) -> None:
    buf[:] = b"\x00" * len(buf)


MAX_FUTURE_EPOCHS = 1  # clock skew allowed between a sealer and the key's holder, in epochs


def epoch_of(t: float, epoch_s: float) -> int:
    return math.floor(t / epoch_s)


def min_live_epoch(now: float, epoch_s: float, ttl_s: float) -> int:
    """The oldest epoch whose key may still exist: epoch e lives while e * epoch_s + ttl_s > now."""
    return math.floor((now - ttl_s) / epoch_s) + 1


@dataclass(frozen=True, slots=True)
class ChainState:
    """What a key holder hands out: the chain key of the oldest live epoch (never anything older)."""

    name: str
    chain_id: str
    epoch: int
    chain_key: bytes
    epoch_s: float
    ttl_s: float
    served_at: float = 0.0  # the holder's clock when it handed this out: rings decide expiry by that clock

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "chain_id": self.chain_id,
            "epoch": self.epoch,
            "epoch_s": self.epoch_s,
            "ttl_s": self.ttl_s,
            "chain_key": base64.b64encode(self.chain_key).decode(),
            "served_at": self.served_at,
        }

    @classmethod
    def from_json(cls, d: dict) -> ChainState:
        return cls(
            d["name"],
            d["chain_id"],
            int(d["epoch"]),
            base64.b64decode(d["chain_key"]),
            float(d["epoch_s"]),
            float(d["ttl_s"]),
            float(d.get("served_at", 0.0)),
        )


class Ratchet:
    """A forward hash chain positioned at ``epoch``; derives keys of that epoch and later ones."""

    __slots__ = ("name", "chain_id", "epoch", "_chain", "epoch_s", "ttl_s", "_keys", "_boxes")

    def __init__(self, state: ChainState) -> None:
        self.name, self.chain_id, self.epoch = state.name, state.chain_id, state.epoch
        self.epoch_s, self.ttl_s = state.epoch_s, state.ttl_s
        self._chain = bytearray(state.chain_key)
        self._keys: dict[int, AESGCM] = {}
        self._boxes: dict[int, X25519PrivateKey] = {}  # sealed-box keys (sightings): the edge gets the public half

    @classmethod
    def fresh(cls, name: str, epoch_s: float, ttl_s: float, now: float) -> Ratchet:
        state = ChainState(name, secrets.token_hex(4), min_live_epoch(now, epoch_s, ttl_s), secrets.token_bytes(KEY_BYTES), epoch_s, ttl_s)
        return cls(state)

    def state(self, served_at: float = 0.0) -> ChainState:
        return ChainState(self.name, self.chain_id, self.epoch, bytes(self._chain), self.epoch_s, self.ttl_s, served_at)

    def advance(self, now: float, at_least: int | None = None) -> int:
        """Destroy every key of an epoch past its TTL (and, with ``at_least``, every epoch before that one: the
        holder shredded that far). Returns how many epochs were destroyed."""
        target = max(min_live_epoch(now, self.epoch_s, self.ttl_s), at_least if at_least is not None else -(2**62))
        n = 0
        while self.epoch < target:
            nxt = mac(self._chain, b"paxsim-ratchet-next")
            _wipe(self._chain)
            self._chain = bytearray(nxt)
            self._keys.pop(self.epoch, None)
            self._boxes.pop(self.epoch, None)
            self.epoch += 1
            n += 1
        if n:
            SHRED.labels("epoch").inc(n)
        return n

    def _chain_at(self, epoch: int, now: float) -> bytes:
        """The chain key of ``epoch``; KeyExpired if destroyed, SealError if hostile (too far ahead)."""
        self.advance(now)
        if epoch < self.epoch:
            raise KeyExpired(f"epoch {epoch} of chain {self.name}:{self.chain_id} is destroyed")
        # no honest sealer is more than a clock-skew allowance ahead of now: a later epoch is a hostile key
        # id (deriving it would cost a hash per epoch, on the caller's event loop, and cache every key)
        if epoch > epoch_of(now, self.epoch_s) + MAX_FUTURE_EPOCHS and not faults.disabled("key-id.epoch"):
            raise SealError(f"epoch {epoch} of chain {self.name} is ahead of the current one ({epoch_of(now, self.epoch_s)})")
        chain = bytes(self._chain)
        for _ in range(epoch - self.epoch):
            chain = mac(chain, b"paxsim-ratchet-next")
        return chain

    def aead(self, epoch: int, now: float) -> AESGCM:
        """The cipher of ``epoch``; :class:`KeyExpired` if that key is destroyed (or, as a result, never held)."""
        self.advance(now)
        cipher = self._keys.get(epoch) if epoch >= self.epoch else None
        if cipher is None:
            cipher = self._keys[epoch] = AESGCM(mac(self._chain_at(epoch, now), b"paxsim-epoch-key"))
        return cipher

    def box_key(self, epoch: int, now: float) -> X25519PrivateKey:
        """The X25519 private key of ``epoch`` (sealed boxes: edges seal to its public half and cannot open);
        destroyed with the epoch like the AEAD key."""
        self.advance(now)
        key = self._boxes.get(epoch) if epoch >= self.epoch else None
        if key is None:
            key = self._boxes[epoch] = X25519PrivateKey.from_private_bytes(mac(self._chain_at(epoch, now), b"paxsim-epoch-x25519"))
        return key
