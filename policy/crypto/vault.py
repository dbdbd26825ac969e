"""Per-subject keys for stored data (gallery, trajectories, snapshots) and the pseudonyms derived from them."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy.crypto.errors import KeyExpired, KeyForbidden, SealError
from policy.crypto.holder import pseudonym_from_key, pseudonym_of
from policy.crypto.metrics import OPEN_FAIL
from policy.crypto.ratchet import NONCE_BYTES
from policy.crypto.ring import Refresher, auto_background
from policy.crypto.sources import KeySource


class SubjectVault:
    """Per-subject sealing for stored data (gallery entries, trajectories, snapshots).

    Keys are cached in memory for at most ``cache_s`` after the key holder last confirmed them, so that a
    process that misses an erasure message still loses the key within that bound; :meth:`forget` drops it at
    once (call it on every erasure).

    With ``background`` (default: on for :class:`HttpKeySource`) a daemon thread re-confirms every cached key
    that is older than ``refresh_at × cache_s``, all in one round trip and never creating a key: a key the
    holder no longer has is dropped at once, the others get a fresh ``cache_s``. So a warmed subject's key
    (see :meth:`warm`, at start-up before consuming) never expires while it is in use and ``seal``/``open``/
    ``pseudonym`` never wait for the network; only a subject never seen before costs one inline round trip.
    """

    def __init__(
        self,
        source: KeySource,
        clock: Callable[[], float] = time.monotonic,
        cache_s: float = 5.0,
        background: bool | None = None,
        refresh_at: float = 0.4,
        batch: int = 2000,
        pseudonyms_only: bool = False,
    ) -> None:
        """``pseudonyms_only``: ask for pseudonym keys (the gate's and the dashboard's right): this vault names
        existing subjects and seals or opens nothing."""
        self.source, self.clock, self.cache_s = source, clock, cache_s
        self.pseudonyms_only = pseudonyms_only
        self.refresh_at, self.batch = refresh_at, batch
        self._cache: dict[str, tuple[float, str, AESGCM | None, str]] = {}  # cipher None: a pseudonym key
        self._lock = threading.Lock()
        self._forgets = 0  # bumped by forget(): a fetch that started before a forget must not re-insert the key
        self._forgotten: dict[str, int] = {}
        self._refresher: Refresher | None = None
        if auto_background(source, background):
            self.start()

    def start(self, interval_s: float | None = None) -> SubjectVault:
        """Re-confirm aging keys in a daemon thread every ``interval_s`` (default a fifth of ``cache_s``)."""
        if self._refresher is None:
            every = interval_s or self.cache_s / 5
            self._refresher = Refresher(self, "refresh", lambda: every, "subject-vault")
        return self

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.stop()
            self._refresher = None

    def _install(self, fetched: dict[str, tuple[str, bytes]], asked: list[str], now: float, since: int) -> dict[str, tuple[str, AESGCM]]:
        """Under ``_lock``: replace the entries of ``asked`` by what the holder returned (absent = gone)."""
        out: dict[str, tuple[str, AESGCM]] = {}
        for sid in asked:
            self._cache.pop(sid, None)
        for sid, (kid, raw) in fetched.items():
            if self._forgotten.get(sid, -1) > since:
                continue  # erased while this fetch was in flight: never bring it back
            if self.pseudonyms_only:
                self._cache[sid] = (now, kid, None, self._name(raw))
                continue
            cipher = AESGCM(raw)
            self._cache[sid] = (now, kid, cipher, pseudonym_of(raw))
            out[sid] = (kid, cipher)
        return out

    def _name(self, key: bytes) -> str:
        """The pseudonym a fetched key gives (a pseudonym key, or a raw subject key)."""
        return pseudonym_from_key(key) if self.pseudonyms_only else pseudonym_of(key)

    def _fetch(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        if self.pseudonyms_only:  # never creates: a stage that only names subjects cannot enrol one
            return self.source.pseudonym_keys(subject_ids, False)
        return self.source.subject_keys(subject_ids, create)

    def _fresh(self, subject_id: str, now: float) -> tuple[float, str, AESGCM | None, str] | None:
        """The cached (confirmed at, key id, cipher, pseudonym) if confirmed within ``cache_s``."""
        hit = self._cache.get(subject_id)
        return hit if hit is not None and now - hit[0] < self.cache_s else None

    def _keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, AESGCM]]:
        now = self.clock()
        out: dict[str, tuple[str, AESGCM]] = {}
        missing = []
        with self._lock:
            since = self._forgets
            for sid in subject_ids:
                hit = self._fresh(sid, now)
                if hit is not None and hit[2] is not None:
                    out[sid] = (hit[1], hit[2])
                elif hit is not None:
                    continue  # a pseudonym key: named, nothing to seal or open with
                else:
                    missing.append(sid)
        for i in range(0, len(missing), self.batch):
            part = missing[i : i + self.batch]
            fetched = self._fetch(part, create)
            with self._lock:
                out.update(self._install(fetched, part, now, since))
        return out

    def refresh(self) -> int:
        """Re-confirm cached keys older than ``refresh_at × cache_s`` with the holder (never creating any).
        Returns how many were asked for. What the background thread runs; callable directly."""
        now = self.clock()
        with self._lock:
            since = self._forgets
            aging = [sid for sid, hit in self._cache.items() if now - hit[0] >= self.refresh_at * self.cache_s]
            if len(self._forgotten) > 10_000:  # tombstones only matter for fetches in flight
                self._forgotten = {k: v for k, v in self._forgotten.items() if v >= since - 100}
        for i in range(0, len(aging), self.batch):
            part = aging[i : i + self.batch]
            fetched = self._fetch(part, False)
            with self._lock:
                self._install(fetched, part, now, since)
        return len(aging)

    def warm(self, subject_ids: list[str], create: bool = True) -> None:
        """Fetch many keys in one round trip (e.g. at gallery load, before consuming)."""
        self._keys(subject_ids, create)

    def _cipher_needed(self) -> None:
        if self.pseudonyms_only:
            raise KeyForbidden("this credential holds pseudonym keys only: it seals and opens nothing")

    def seal(self, subject_id: str, plaintext: bytes, aad: bytes = b"") -> tuple[str, bytes]:
        self._cipher_needed()
        got = self._keys([subject_id], True).get(subject_id)
        if got is None:
            raise KeyExpired("the subject was erased: no key can be made for it again")  # no id: messages reach logs
        kid, cipher = got
        nonce = secrets.token_bytes(NONCE_BYTES)
        return kid, nonce + cipher.encrypt(nonce, plaintext, aad + kid.encode())

    def open(self, subject_id: str, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        self._cipher_needed()
        got = self._keys([subject_id], False).get(subject_id)
        if got is None or got[0] != key_id:
            OPEN_FAIL.labels("subject-erased").inc()
            raise KeyExpired("the subject's key is destroyed")
        try:
            return got[1].decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad + key_id.encode())
        except InvalidTag:
            OPEN_FAIL.labels("tampered").inc()
            raise SealError("a payload sealed under a subject key does not authenticate") from None

    def can_open(self, subject_id: str, key_id: str) -> bool:
        if self.pseudonyms_only:
            return False
        got = self._keys([subject_id], False).get(subject_id)
        return got is not None and got[0] == key_id

    def pseudonym(self, subject_id: str) -> str:
        """A stable pseudonym for records that leave the matcher (matches, tracks, audit): ``ps-<24 hex>``.

        Derived from the subject key, so it links to the subject only while the key lives; after erasure
        every copy on the broker or in a store is an unlinkable token. Cached like the key.
        """
        hit = self._fresh(subject_id, self.clock())  # hot path: one dict read (atomic), no list, no lock
        if hit is not None:
            return hit[3]
        self._keys([subject_id], not self.pseudonyms_only)
        with self._lock:
            hit = self._cache.get(subject_id)
        if hit is None:  # forgotten (erased) in between
            raise KeyExpired("the subject's key is destroyed")
        return hit[3]

    def existing_pseudonym(self, subject_id: str) -> str | None:
        """The subject's pseudonym if its key exists; never creates a key (use before an erasure destroys it)."""
        fetched = self._fetch([subject_id], False)
        return self._name(fetched[subject_id][1]) if subject_id in fetched else None

    def resolve_all(self, pseudonyms: set[str]) -> dict[str, str]:
        """pseudonym → subject for every subject whose key still exists, consented or not (erased ones stay unknown)."""
        return self.source.resolve_pseudonyms(sorted(pseudonyms)) if pseudonyms else {}

    def resolve(self, pseudonyms: set[str], candidates: list[str]) -> dict[str, str]:
        """pseudonym → subject, for those of ``candidates`` whose key still exists (erased ones stay unknown)."""
        fetched = self._fetch(list(candidates), False)
        return {ps: sid for sid, (_kid, key) in fetched.items() if (ps := self._name(key)) in pseudonyms}

    def forget(self, subject_id: str) -> None:
        with self._lock:
            self._cache.pop(subject_id, None)
            self._forgets += 1
            self._forgotten[subject_id] = self._forgets

    def erase(self, subject_id: str) -> bool:
        """Destroy the subject's key at the holder and here. True if a key existed."""
        self.forget(subject_id)
        return self.source.destroy_subject(subject_id)
