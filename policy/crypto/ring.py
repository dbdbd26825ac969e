"""Key rings a service holds: :class:`EpochKeyRing` (seal and open one key class) and :class:`PublicKeyRing` (an
edge's public halves), refreshed in the background."""

from __future__ import annotations

import base64
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy.crypto.boxes import BoxOpener, BoxSender
from policy.crypto.errors import KeyExpired, KeyUnavailable, SealError
from policy.crypto.metrics import OPEN_FAIL
from policy.crypto.ratchet import NONCE_BYTES, ChainState, Ratchet, epoch_of
from policy.crypto.sources import HttpKeySource, KeySource

log = logging.getLogger("paxsim.policy.crypto")


T = TypeVar("T")


class Refresher:
    """A daemon thread calling ``owner.<method>()`` now and then every ``interval_s`` until ``stop()`` or until the
    owner is garbage-collected (it holds only a weak reference). Exceptions are logged, never raised: the next
    round retries, and the owner's own expiry rules decide what happens meanwhile (fail closed)."""

    def __init__(self, owner: object, method: str, interval: Callable[[], float], name: str) -> None:
        self._ref, self._method, self._interval = weakref.ref(owner), method, interval
        self._stop = threading.Event()
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            owner = self._ref()
            if owner is None:
                return
            try:
                getattr(owner, self._method)()
            except Exception as exc:  # noqa: BLE001 - logged; next round retries
                log.warning("background key refresh failed", extra={"what": self._thread.name, "error": repr(exc)})
            self.rounds += 1
            del owner
            self._stop.wait(self._interval())

    def stop(self) -> None:
        self._stop.set()


def auto_background(source: KeySource, background: bool | None) -> bool:
    """Background refresh defaults to on for a remote key holder (every fetch is a network round trip)."""
    return isinstance(source, HttpKeySource) if background is None else background


class EpochKeyRing:
    """A service's local view of one key class: seal with the current epoch, open while the key lives.

    Fetches the chain state from ``source`` and re-syncs every ``resync_s`` (default: one epoch) to follow
    TTL changes and key-holder restarts. Holds several chains when the key holder was restarted (old chain
    until its keys expire, new chain for sealing).

    With ``background`` (default: on for :class:`HttpKeySource`) a daemon thread does every fetch: it primes
    the ring at construction, re-syncs every half period and derives the keys of the current and the next
    epoch ahead of time, so ``seal``/``open`` never wait for the network (nor for a lock held across it) and an
    epoch boundary is a dict lookup. Only a ring that has never synced fetches on the caller's thread (and
    fails closed with :class:`KeyUnavailable` if the holder is unreachable); an unknown chain id forces a
    fetch at most once per ``force_min_s``. Without ``background`` every sync happens inline, as needed.
    """

    def __init__(
        self,
        source: KeySource,
        name: str = "sightings",
        clock: Callable[[], float] = time.time,
        resync_s: float | None = None,
        background: bool | None = None,
        force_min_s: float = 1.0,
    ) -> None:
        self.source, self.name, self.clock = source, name, clock
        self._chains: dict[str, Ratchet] = {}
        self._current: Ratchet | None = None
        self._synced_at = -math.inf
        self._skew = 0.0  # holder clock - this clock, learnt at every sync
        self._resync_s = resync_s
        self._lock = threading.Lock()
        # hot caches: key id → (valid until, cipher); valid until = min(key expiry, next required sync)
        self._open_hot: dict[str, tuple[float, AESGCM]] = {}
        self._box_hot: dict[str, tuple[float, BoxOpener]] = {}
        self._box_senders: dict[str, BoxSender] = {}
        self._seal_hot: tuple[int, float, str, AESGCM, float] | None = None  # epoch, epoch_s, key id, cipher, until
        self._prefix, self._counter = os.urandom(8), itertools.count()
        self._force_min_s, self._forced_at = force_min_s, -math.inf
        self._refresher: Refresher | None = None
        if auto_background(source, background):
            self.start()

    def start(self, interval_s: float | None = None) -> EpochKeyRing:
        """Run :meth:`refresh` now and then in a daemon thread (default: every half resync period, every
        0.5 s until the first chain state has arrived)."""
        if self._refresher is None:
            ref = weakref.ref(self)

            def interval() -> float:
                ring = ref()
                return interval_s if interval_s is not None else (ring._refresh_interval() if ring is not None else 0.0)

            self._refresher = Refresher(self, "refresh", interval, f"keyring-{self.name}")
        return self

    def _refresh_interval(self) -> float:
        cur = self._current
        if cur is None:
            return 0.5
        period = self._resync_s if self._resync_s is not None else cur.epoch_s
        return max(0.05, min(period, cur.epoch_s) / 2)

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
            self._refresher = None

    def refresh(self) -> None:
        """Fetch the chain state (no lock held during the round trip), install it, derive this epoch's and the
        next epoch's keys. What the background thread runs; callable directly."""
        state = self.source.chain(self.name)
        now = self._now()
        with self._lock:
            r = self._install(state, now)
            epoch = epoch_of(now, r.epoch_s)
            for e in (epoch, epoch + 1):  # ahead of the boundary: the first seal of the next epoch finds its key
                try:
                    r.aead(e, now)
                except KeyExpired:
                    pass

    def _now(self) -> float:
        """The key holder's time as best known here: expiry is decided by its clock, not this host's."""
        return self.clock() + self._skew

    def _install(self, state: ChainState, now: float) -> Ratchet:
        """Under ``_lock``: adopt a fetched chain state as the current chain."""
        if state.served_at:
            # this host's clock may run behind (a key would outlive its TTL here) or ahead: follow the holder's
            local = now - self._skew
            self._skew = state.served_at - local
            now = state.served_at
        self._synced_at = now
        r = self._chains.get(state.chain_id)
        if r is None:
            r = self._chains[state.chain_id] = Ratchet(state)
        else:
            r.ttl_s = state.ttl_s
            if state.epoch > r.epoch:  # the holder shredded further (shorter TTL, or its clock is ahead): follow it
                r.advance(now, at_least=state.epoch)
        self._current = r
        return r

    def _valid_until(self, r: Ratchet, epoch: int) -> float:
        period = self._resync_s if self._resync_s is not None else r.epoch_s
        return min(epoch * r.epoch_s + r.ttl_s, self._synced_at + period)

    def _sync(self, now: float, force: bool = False) -> Ratchet:
        """Under ``_lock``: the current chain, fetching inline only when needed (see the class docstring)."""
        cur = self._current
        if cur is not None:
            if force:
                if now - self._forced_at < self._force_min_s:
                    return cur
                self._forced_at = now
            elif self._refresher is not None:
                return cur  # the background thread keeps it fresh; never a round trip on the caller's thread
            else:
                period = self._resync_s if self._resync_s is not None else cur.epoch_s
                if now - self._synced_at < period:
                    return cur
        try:
            state = self.source.chain(self.name)
        except KeyUnavailable:
            if cur is None:
                raise
            self._synced_at = now  # keep working on local state; retry next period
            return cur
        return self._install(state, now)

    def shred(self) -> None:
        """Destroy expired keys now (also done lazily on every seal/open). Drops fully expired chains."""
        now = self._now()
        with self._lock:
            self._open_hot = {k: v for k, v in self._open_hot.items() if now < v[0]}
            self._box_hot = {k: v for k, v in self._box_hot.items() if now < v[0]}
            if self._seal_hot is not None and now >= self._seal_hot[4]:
                self._seal_hot = None
            for cid, r in list(self._chains.items()):
                r.advance(now)
                if r is not self._current and r.epoch > epoch_of(now, r.epoch_s) + 1:
                    del self._chains[cid]

    def key_id(self, at: float) -> str:
        with self._lock:
            r = self._sync(self._now())
            return f"{self.name}:{r.chain_id}:{epoch_of(at, r.epoch_s)}"

    def seal(self, plaintext: bytes, at: float, aad: bytes = b"") -> tuple[str, bytes]:
        """Encrypt under the key of the epoch containing ``at``. :class:`KeyExpired` if ``at`` is too old."""
        now = self._now()
        hot = self._seal_hot
        if hot is not None and now < hot[4] and math.floor(at / hot[1]) == hot[0]:
            key_id, cipher = hot[2], hot[3]
        else:
            with self._lock:
                r = self._sync(now)
                epoch = epoch_of(at, r.epoch_s)
                cipher = r.aead(epoch, now)
                key_id = f"{self.name}:{r.chain_id}:{epoch}"
                self._seal_hot = (epoch, r.epoch_s, key_id, cipher, self._valid_until(r, epoch))
        nonce = self._nonce()
        return key_id, nonce + cipher.encrypt(nonce, plaintext, aad + key_id.encode())

    def _nonce(self) -> bytes:
        """96-bit nonce: 64 random bits per ring (renewed every 2^32 seals) + a 32-bit counter.

        Unique per key without a syscall per seal; two rings sharing an epoch key collide with
        probability 2^-64 per pair (NIST SP 800-38D §8.2.1 style construction).
        """
        n = next(self._counter)
        if n >= 0xFFFFFFFF:
            self._prefix, self._counter = os.urandom(8), itertools.count()
            n = next(self._counter)
        return self._prefix + n.to_bytes(4, "little")

    def _locate(self, key_id: str, now: float) -> tuple[Ratchet, int]:
        """Under ``_lock``: the chain and epoch ``key_id`` names; SealError if malformed, KeyExpired if unknown."""
        try:
            name, chain_id, epoch_s = key_id.split(":")
            epoch = int(epoch_s)
        except ValueError:
            OPEN_FAIL.labels("bad-key-id").inc()
            raise SealError(f"malformed key id {key_id!r}") from None
        if name != self.name:
            OPEN_FAIL.labels("wrong-class").inc()
            raise SealError(f"key id {key_id!r} is not of class {self.name!r}")
        self._sync(now)
        r = self._chains.get(chain_id)
        if r is None:
            self._sync(now, force=True)
            r = self._chains.get(chain_id)
        if r is None:
            OPEN_FAIL.labels("unknown-chain").inc()
            raise KeyExpired(f"chain {chain_id} is not known here (key holder restarted?)")
        return r, epoch

    def open(self, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt; :class:`KeyExpired` if the key is destroyed/unknown, :class:`SealError` if tampered."""
        cipher = self._hot(self._open_hot, key_id, lambda r, epoch, now: r.aead(epoch, now))
        return self._decrypt(cipher, key_id, blob, aad)

    def _hot(self, cache: dict[str, tuple[float, T]], key_id: str, make: Callable[[Ratchet, int, float], T]) -> T:
        """What opens ``key_id`` (an AES key, a box opener): from ``cache`` while its epoch is live, else made
        from the ratchet under the lock and cached (bounded). :class:`KeyExpired` if the key is gone."""
        hot = cache.get(key_id)
        if hot is not None and self._now() < hot[0]:
            return hot[1]
        now = self._now()
        with self._lock:
            r, epoch = self._locate(key_id, now)
            try:
                made = make(r, epoch, now)
            except KeyExpired:
                OPEN_FAIL.labels("expired").inc()
                raise
            if len(cache) > 256:
                cache.clear()
            cache[key_id] = (self._valid_until(r, epoch), made)
        return made

    def seal_box(self, plaintext: bytes, at: float, aad: bytes = b"") -> tuple[str, bytes]:
        """Seal to the public half of the epoch's X25519 key, as an edge does with :class:`PublicKeyRing`."""
        now = self._now()
        with self._lock:
            r = self._sync(now)
            epoch = epoch_of(at, r.epoch_s)
            key_id = f"{self.name}:{r.chain_id}:{epoch}"
            sender = self._box_senders.get(key_id)
            if sender is None:
                sender = BoxSender(r.box_key(epoch, now).public_key())
                self._box_senders = {k: v for k, v in self._box_senders.items() if int(k.rsplit(":", 1)[1]) >= epoch - 2}
                self._box_senders[key_id] = sender
        return key_id, sender.seal(key_id, plaintext, aad)

    def open_box(self, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        """Open a sealed box; :class:`KeyExpired` if the epoch's key is destroyed/unknown, :class:`SealError` if
        tampered."""
        opener = self._hot(self._box_hot, key_id, lambda r, epoch, now: BoxOpener(r.box_key(epoch, now)))
        try:
            return opener.open(key_id, blob, aad)
        except SealError:
            OPEN_FAIL.labels("tampered").inc()
            raise

    @staticmethod
    def _decrypt(cipher: AESGCM, key_id: str, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + 16:
            OPEN_FAIL.labels("tampered").inc()
            raise SealError("sealed payload too short")
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad + key_id.encode())
        except InvalidTag:
            OPEN_FAIL.labels("tampered").inc()
            raise SealError(f"payload sealed under {key_id} does not authenticate") from None

    def can_open(self, key_id: str) -> bool:
        """True if this ring still holds (or can derive) the key named by ``key_id``."""
        try:
            name, chain_id, epoch = key_id.split(":")
            now = self._now()
            with self._lock:
                self._sync(now)
                r = self._chains.get(chain_id) or (self._sync(now, force=True) and self._chains.get(chain_id))
                if name != self.name or r is None:
                    return False
                r.aead(int(epoch), now)
            return True
        except (ValueError, KeyExpired, KeyUnavailable):
            return False


class PublicKeyRing:
    """What an edge holds: the public halves of the current epochs' X25519 keys of one class (never a private
    key nor the chain), fetched from the key holder and refreshed in the background like :class:`EpochKeyRing`.
    It seals (:meth:`seal_box`) and cannot open anything, its own payloads included."""

    def __init__(self, source: KeySource, name: str = "sightings", background: bool | None = None) -> None:
        self.source, self.name = source, name
        self._lock = threading.Lock()
        self._chain_id = ""
        self._epoch_s = 0.0
        self._keys: dict[int, X25519PublicKey] = {}
        self._senders: dict[str, BoxSender] = {}  # key id → its sender (ephemeral key), the last few epochs only
        self._refresher: Refresher | None = None
        if auto_background(source, background):
            self._refresher = Refresher(self, "refresh", lambda: max(0.5, self._epoch_s / 2) if self._epoch_s else 0.5, f"pubring-{name}")

    def refresh(self) -> None:
        d = self.source.public_chain(self.name)
        keys = {int(e): X25519PublicKey.from_public_bytes(base64.b64decode(k)) for e, k in d["keys"].items()}
        with self._lock:
            self._chain_id, self._epoch_s, self._keys = str(d["chain_id"]), float(d["epoch_s"]), keys

    def seal_box(self, plaintext: bytes, at: float, aad: bytes = b"") -> tuple[str, bytes]:
        """Seal to the key of the epoch containing ``at``; KeyExpired if the holder offers none for it."""
        for attempt in (0, 1):
            with self._lock:
                if self._epoch_s:
                    epoch = epoch_of(at, self._epoch_s)
                    public = self._keys.get(epoch)
                    if public is not None:
                        key_id = f"{self.name}:{self._chain_id}:{epoch}"
                        sender = self._senders.get(key_id)
                        if sender is None:
                            self._senders = {k: v for k, v in self._senders.items() if int(k.rsplit(":", 1)[1]) >= epoch - 2}
                            sender = self._senders[key_id] = BoxSender(public)
                        return key_id, sender.seal(key_id, plaintext, aad)
            if attempt == 0:
                self.refresh()
        raise KeyExpired(f"no {self.name} public key for time {at:.3f} (too old, or the key holder is behind)")

    def shred(self) -> None:
        """Nothing secret to destroy; kept for the ring interface."""

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
