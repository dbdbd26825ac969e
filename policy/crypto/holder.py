"""The key holder's logic (served over loopback HTTP by ``policy.keyd``): chains, subject keys, tombstones, signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from policy.crypto.boxes import raw_public
from policy.crypto.errors import KeyExpired
from policy.crypto.metrics import SHRED
from policy.crypto.ratchet import KEY_BYTES, MAX_FUTURE_EPOCHS, ChainState, Ratchet, epoch_of, mac
from policy.keystore import SealedState, b64, unb64
from policy.notary import Notary

LOCAL_ISSUER = "local"  # control messages signed by an in-process key holder (tests, single-process tools)
ISSUERS = frozenset({"gate", "dashboard", "admin", LOCAL_ISSUER})  # roles whose signed erasure requests count


def pseudonym_key(raw_key: bytes) -> bytes:
    """What a stage that names subjects but opens nothing (gate, dashboard) gets instead of the subject key: it
    derives the pseudonym and cannot open a template sealed under the subject key."""
    return hmac.new(raw_key, b"paxsim-pseudonym-key", hashlib.sha256).digest()


def pseudonym_from_key(ps_key: bytes) -> str:
    return "ps-" + hmac.new(ps_key, b"paxsim-pseudonym", hashlib.sha256).hexdigest()[:24]


def pseudonym_of(raw_key: bytes) -> str:
    """A subject's pseudonym: derived from their key, so it dies with it (erasure unlinks every copy)."""
    return pseudonym_from_key(pseudonym_key(raw_key))


class KeyHolder:
    """The run's only owner of key material: ratchets per retention class and per-subject keys."""

    def __init__(
        self, classes: dict[str, tuple[float, float]], clock: Callable[[], float] = time.time, store: SealedState | None = None
    ) -> None:
        """``classes``: name → (epoch_s, ttl_s), e.g. ``{"sightings": (10, 120)}``. ``store``: the sealed state file
        (:mod:`policy.keystore`): what it holds is restored, and every change is written to it before it is
        answered; without it everything lives in memory only."""
        self.clock = clock
        self._lock = threading.Lock()
        self._store = store
        now = clock()
        self._chains = {name: Ratchet.fresh(name, e, t, now) for name, (e, t) in classes.items()}
        self._subjects: dict[str, tuple[int, bytes]] = {}
        self._generations: dict[str, int] = {}
        # in every subject key id: a holder that lost its keys (restarted without a state file) never reuses an
        # old id for a new key
        self.instance = secrets.token_hex(4)
        # erased subjects, as keyed hashes (the holder keeps no list of who was erased): never given a key again
        self._tomb_key = secrets.token_bytes(KEY_BYTES)
        self._tombstones: set[bytes] = set()
        self.notary = Notary()  # countersigns the audit chains' heads (policy.notary)
        doc = store.load() if store is not None else None
        if doc is not None:
            self._restore(doc, classes, now)
        self._save()

    def _restore(self, doc: dict, classes: dict[str, tuple[float, float]], now: float) -> None:
        self.instance = doc["instance"]
        self._tomb_key = unb64(doc["tomb_key"])
        self._tombstones = {unb64(t) for t in doc["tombstones"]}
        self._subjects = {sid: (int(gen), unb64(key)) for sid, (gen, key) in doc["subjects"].items()}
        # generations of live keys only: an erased subject's id is in no list (its tombstone is a keyed hash)
        self._generations = {sid: int(g) for sid, g in doc["generations"].items() if sid in self._subjects}
        if "notary" in doc:
            self.notary = Notary(unb64(doc["notary"]["key"]), doc["notary"]["checkpoints"])
        for name, saved in doc["chains"].items():
            state = ChainState.from_json(saved)
            if name in classes and classes[name][0] == state.epoch_s:  # same epoch length: the chain goes on
                r = Ratchet(state)
                r.ttl_s = classes[name][1]  # the policy now in force decides the TTL
                r.advance(now)
                self._chains[name] = r

    def _save(self) -> None:
        """Write the state file (callers hold the lock, or own the holder alone)."""
        if self._store is None:
            return
        self._store.save(
            {
                "instance": self.instance,
                "tomb_key": b64(self._tomb_key),
                "tombstones": sorted(b64(t) for t in self._tombstones),
                "subjects": {sid: [gen, b64(key)] for sid, (gen, key) in self._subjects.items()},
                "generations": self._generations,
                "chains": {name: r.state().to_json() for name, r in self._chains.items()},
                "notary": {"key": b64(self.notary.private_bytes()), "checkpoints": self.notary.checkpoints},
            }
        )

    def checkpoint(self, chain: str, seq: int, head: str, prev: tuple[int, str] | None = None) -> dict:
        """Keep and sign an audit chain's head (policy.notary); saved before it is answered."""
        with self._lock:
            cp = self.notary.checkpoint(chain, seq, head, self.clock(), prev)
            self._save()
        return cp

    def checkpoints(self) -> dict:
        return self.notary.signed()

    def sign_control(self, issuer: str, payload: bytes) -> str:
        return self.notary.sign_control(issuer, payload)

    def _tombstone(self, subject_id: str) -> bytes:
        return mac(self._tomb_key, b"paxsim-tombstone:" + subject_id.encode())

    def set_ttl(self, name: str, ttl_s: float, epoch_s: float | None = None) -> None:
        """Change a class's TTL (policy reload). A longer TTL cannot bring back keys already destroyed. A class the
        holder does not have yet (a purpose added by the reload) starts now with ``epoch_s``."""
        with self._lock:
            r = self._chains.get(name)
            if r is None:
                if epoch_s is None:
                    raise KeyError(name)
                r = self._chains[name] = Ratchet.fresh(name, epoch_s, ttl_s, self.clock())
            r.ttl_s = ttl_s
            r.advance(self.clock())
            self._save()

    def _current(self, name: str) -> tuple[Ratchet, float]:
        """The class's ratchet advanced to now (saved when it moved), and now. Call with the lock held."""
        r = self._chains.get(name)
        if r is None:
            raise KeyExpired(f"no key class {name!r}")
        now = self.clock()
        if r.advance(now):
            self._save()
        return r, now

    def chain(self, name: str) -> ChainState:
        with self._lock:
            r, now = self._current(name)
            return r.state(served_at=now)

    def public_chain(self, name: str) -> dict:
        """The public halves of the sealed-box keys of the previous, current and next epoch of a class: all a
        sealer needs (a frame captured just before a boundary, a clock slightly ahead), nothing that opens."""
        with self._lock:
            r, now = self._current(name)
            cur = epoch_of(now, r.epoch_s)
            keys = {
                str(e): base64.b64encode(raw_public(r.box_key(e, now).public_key())).decode()
                for e in range(max(r.epoch, cur - 1), cur + MAX_FUTURE_EPOCHS + 1)
            }
            return {"name": name, "chain_id": r.chain_id, "epoch_s": r.epoch_s, "served_at": now, "keys": keys}

    def shred(self) -> None:
        with self._lock:
            now = self.clock()
            if sum(r.advance(now) for r in self._chains.values()):
                self._save()

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        out: dict[str, tuple[str, bytes]] = {}
        with self._lock:
            created = False
            for sid in subject_ids:
                entry = self._subjects.get(sid)
                if entry is None and create and self._tombstone(sid) not in self._tombstones:
                    gen = self._generations.get(sid, 0) + 1
                    self._generations[sid] = gen
                    entry = self._subjects[sid] = (gen, secrets.token_bytes(KEY_BYTES))
                    created = True
                if entry is not None:
                    out[sid] = (f"subject:{sid}:{self.instance}.{entry[0]}", entry[1])
            if created:
                self._save()  # a key is on disk before anybody seals with it
        return out

    def pseudonym_keys(self, subject_ids: list[str], create: bool = False) -> dict[str, tuple[str, bytes]]:
        """Like :meth:`subject_keys`, with each key replaced by its pseudonym key (:func:`pseudonym_key`)."""
        return {sid: (kid, pseudonym_key(raw)) for sid, (kid, raw) in self.subject_keys(subject_ids, create).items()}

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        """pseudonym → subject for every live subject key, whoever holds consent or not (the auditor's question:
        does this reference still name somebody?). Resolved here, so no key leaves the holder for it."""
        wanted = set(pseudonyms)
        with self._lock:
            live = list(self._subjects.items())
        return {ps: sid for sid, (_gen, raw) in live if (ps := pseudonym_of(raw)) in wanted}

    def destroy_subject(self, subject_id: str) -> bool:
        """Destroy the subject's key and refuse to make one ever again (an erasure racing a match or an e-gate
        claim must not bring the subject back under a new key)."""
        with self._lock:
            existed = self._subjects.pop(subject_id, None) is not None
            self._generations.pop(subject_id, None)  # tombstoned: it never gets a key again, so no generation to keep
            self._tombstones.add(self._tombstone(subject_id))
            self._save()  # the erasure holds across a restart before it is confirmed
        if existed:
            SHRED.labels("subject").inc()
        return existed
