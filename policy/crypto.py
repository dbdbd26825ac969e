"""Crypto-shredding: retention and erasure that hold even in an append-only log.

Two kinds of keys, both held only in memory (never written to the broker or to disk):

* **Epoch keys** seal sighting embeddings on the broker. Time is cut into epochs of ``epoch_s``; the keys
  of epoch *e* come from a forward hash ratchet (``C[e+1] = HMAC(C[e], "next")``, ``K[e] = HMAC(C[e],
  "enc")`` for AES-256-GCM, ``X[e] = X25519(HMAC(C[e], "x25519"))`` for sealed boxes: an edge gets only the
  public half of ``X[e]`` (:class:`PublicKeyRing`), so it seals sightings it cannot open). Whoever holds ``C[e]`` can derive every *later* key but never an earlier
  one, so destroying old keys is just advancing the chain. The key of epoch *e* is destroyed once
  ``e * epoch_s + ttl_s <= now``: a payload sealed at time *t* is unreadable by ``t + ttl_s`` at the
  latest and readable for at least ``ttl_s - epoch_s``.
* **Subject keys** (one random AES key per subject) seal stored trajectories and gallery entries;
  erasure destroys the key, which makes every copy of that subject's data unreadable wherever it is.

Distribution: one :class:`KeyHolder` per run (``policy.keyd``, a loopback HTTP process authenticated by
a per-run bearer token) owns the chains and the subject keys. Services use an :class:`EpochKeyRing` and
a :class:`SubjectVault` over a :class:`KeySource` (in-process :class:`LocalKeySource` or
:class:`HttpKeySource`); they fetch the chain state once, ratchet locally, and re-sync every epoch. Over
HTTP every fetch runs in a background thread (ring: re-sync every half epoch, next epoch's key derived
ahead; vault: aging subject keys re-confirmed before they expire), so no key-holder round trip ever runs
on a service's event loop once it is warm. Each round trip is timed in
``paxsim_crypto_keyd_call_seconds{op,where}`` (``where="loop"`` = it blocked an event loop). A
service restarted mid-run fetches the *current* state and so cannot read anything already expired. If
the key holder itself dies, all sealed data becomes unreadable (fail closed). See docs/privacy.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import logging
import math
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from prometheus_client import Counter, Histogram

from broker.messages import ErasureRequest, Sighting
from policy.keystore import SealedState, b64, unb64
from policy.notary import CheckpointRefused, Notary

log = logging.getLogger("paxsim.policy.crypto")
T = TypeVar("T")

NONCE_BYTES = 12
KEY_BYTES = 32

SHRED = Counter("paxsim_crypto_keys_destroyed_total", "Keys destroyed (epoch keys on expiry, subject keys on erasure)", ["kind"])
KEYD_CALL = Histogram(
    "paxsim_crypto_keyd_call_seconds",
    "Round trips to the key holder, by operation and by where they ran (loop = on an asyncio event loop thread: it blocked the loop)",
    ["op", "where"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OPEN_FAIL = Counter("paxsim_crypto_open_failures_total", "Payloads that could not be opened", ["reason"])


class CryptoError(Exception):
    """Base of the errors below."""


class KeyExpired(CryptoError):
    """The key for this payload is destroyed (past its TTL, erased) or was never known here."""


class KeyUnavailable(CryptoError):
    """The key holder cannot be reached; callers must fail closed (drop, never send plaintext)."""


class KeyForbidden(CryptoError):
    """This credential may not ask the key holder for that (its role's permissions, policy.keyd)."""


class SealError(CryptoError):
    """The ciphertext does not authenticate (tampered, wrong key, wrong context)."""


def _mac(key: bytes | bytearray, label: bytes) -> bytes:
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
            nxt = _mac(self._chain, b"paxsim-ratchet-next")
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
        if epoch > epoch_of(now, self.epoch_s) + MAX_FUTURE_EPOCHS:
            raise SealError(f"epoch {epoch} of chain {self.name} is ahead of the current one ({epoch_of(now, self.epoch_s)})")
        chain = bytes(self._chain)
        for _ in range(epoch - self.epoch):
            chain = _mac(chain, b"paxsim-ratchet-next")
        return chain

    def aead(self, epoch: int, now: float) -> AESGCM:
        """The cipher of ``epoch``; :class:`KeyExpired` if that key is destroyed (or, as a result, never held)."""
        self.advance(now)
        cipher = self._keys.get(epoch) if epoch >= self.epoch else None
        if cipher is None:
            cipher = self._keys[epoch] = AESGCM(_mac(self._chain_at(epoch, now), b"paxsim-epoch-key"))
        return cipher

    def box_key(self, epoch: int, now: float) -> X25519PrivateKey:
        """The X25519 private key of ``epoch`` (sealed boxes: edges seal to its public half and cannot open);
        destroyed with the epoch like the AEAD key."""
        self.advance(now)
        key = self._boxes.get(epoch) if epoch >= self.epoch else None
        if key is None:
            key = self._boxes[epoch] = X25519PrivateKey.from_private_bytes(_mac(self._chain_at(epoch, now), b"paxsim-epoch-x25519"))
        return key


def _on_event_loop() -> bool:
    """True when called from a thread that is running an asyncio event loop (where blocking I/O stalls it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class KeySource(Protocol):
    """Where services get key material from: the key holder, in-process or over loopback HTTP."""

    def chain(self, name: str) -> ChainState: ...

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]: ...

    def destroy_subject(self, subject_id: str) -> bool: ...

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]: ...

    def checkpoint(self, chain: str, seq: int, head: str) -> dict: ...

    def checkpoints(self) -> dict: ...

    def sign_control(self, payload: bytes) -> tuple[str, bytes]: ...

    def control_key(self) -> str: ...

    def public_chain(self, name: str) -> dict: ...


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
        self._generations = {sid: int(g) for sid, g in doc["generations"].items()}
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

    def checkpoint(self, chain: str, seq: int, head: str) -> dict:
        """Keep and sign an audit chain's head (policy.notary); saved before it is answered."""
        with self._lock:
            cp = self.notary.checkpoint(chain, seq, head, self.clock())
            self._save()
        return cp

    def checkpoints(self) -> dict:
        return self.notary.signed()

    def sign_control(self, issuer: str, payload: bytes) -> str:
        return self.notary.sign_control(issuer, payload)

    def _tombstone(self, subject_id: str) -> bytes:
        return _mac(self._tomb_key, b"paxsim-tombstone:" + subject_id.encode())

    def set_ttl(self, name: str, ttl_s: float) -> None:
        """Change a class's TTL (policy reload). A longer TTL cannot bring back keys already destroyed."""
        with self._lock:
            r = self._chains[name]
            r.ttl_s = ttl_s
            r.advance(self.clock())
            self._save()

    def chain(self, name: str) -> ChainState:
        with self._lock:
            r = self._chains.get(name)
            if r is None:
                raise KeyExpired(f"no key class {name!r}")
            now = self.clock()
            if r.advance(now):
                self._save()
            return r.state(served_at=now)

    def public_chain(self, name: str) -> dict:
        """The public halves of the sealed-box keys of the previous, current and next epoch of a class: all a
        sealer needs (a frame captured just before a boundary, a clock slightly ahead), nothing that opens."""
        with self._lock:
            r = self._chains.get(name)
            if r is None:
                raise KeyExpired(f"no key class {name!r}")
            now = self.clock()
            if r.advance(now):
                self._save()
            cur = epoch_of(now, r.epoch_s)
            keys = {
                str(e): base64.b64encode(_raw(r.box_key(e, now).public_key())).decode()
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

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        """pseudonym → subject for every live subject key, whoever holds consent or not (the auditor's question:
        does this reference still name somebody?). Resolved here, so no key leaves the holder for it."""
        wanted = set(pseudonyms)
        with self._lock:
            live = list(self._subjects.items())
        return {ps: sid for sid, (_gen, raw) in live if (ps := _pseudonym(raw)) in wanted}

    def destroy_subject(self, subject_id: str) -> bool:
        """Destroy the subject's key and refuse to make one ever again (an erasure racing a match or an e-gate
        claim must not bring the subject back under a new key)."""
        with self._lock:
            existed = self._subjects.pop(subject_id, None) is not None
            self._tombstones.add(self._tombstone(subject_id))
            self._save()  # the erasure holds across a restart before it is confirmed
        if existed:
            SHRED.labels("subject").inc()
        return existed


class LocalKeySource:
    """A :class:`KeySource` over a :class:`KeyHolder` in this process (tests, single-process tools)."""

    def __init__(self, holder: KeyHolder) -> None:
        self.holder = holder

    def chain(self, name: str) -> ChainState:
        return self.holder.chain(name)

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        return self.holder.subject_keys(subject_ids, create)

    def destroy_subject(self, subject_id: str) -> bool:
        return self.holder.destroy_subject(subject_id)

    def checkpoint(self, chain: str, seq: int, head: str) -> dict:
        return self.holder.checkpoint(chain, seq, head)

    def checkpoints(self) -> dict:
        return self.holder.checkpoints()

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        return self.holder.resolve_pseudonyms(pseudonyms)

    def sign_control(self, payload: bytes) -> tuple[str, bytes]:
        return LOCAL_ISSUER, base64.b64decode(self.holder.sign_control(LOCAL_ISSUER, payload))

    def control_key(self) -> str:
        return self.holder.notary.public_key

    def public_chain(self, name: str) -> dict:
        return self.holder.public_chain(name)


class HttpKeySource:
    """A :class:`KeySource` talking to ``policy.keyd`` on loopback with the run's bearer token."""

    def __init__(self, url: str, token: str, timeout_s: float = 2.0) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout_s, headers={"Authorization": f"Bearer {token}"}, trust_env=False
        )
        self._control_key: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HttpKeySource:
        env = os.environ if environ is None else environ
        try:
            return cls(env["PAXSIM_KEYD_URL"], env["PAXSIM_KEYD_TOKEN"])
        except KeyError as exc:
            raise KeyUnavailable(f"{exc.args[0]} is not set: no key holder for this run") from None

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        op = path.split("/")[2] if path.startswith("/v1/") else path
        where = "loop" if _on_event_loop() else "thread"
        t0 = time.perf_counter()
        try:
            r = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise KeyUnavailable(f"key holder unreachable: {exc}") from None
        finally:
            dt = time.perf_counter() - t0
            KEYD_CALL.labels(op, where).observe(dt)
            log.info(
                "key holder call",
                extra={
                    "op": op,
                    "where": where,
                    "ids": len(body.get("ids", ())) if body else 0,
                    "ms": round(dt * 1000, 2),
                    "thread_name": threading.current_thread().name,
                },
            )
        if r.status_code == 404:
            raise KeyExpired(r.json().get("detail", "not found"))
        if r.status_code == 409:
            raise CheckpointRefused(r.json().get("detail", "checkpoint refused"))
        if r.status_code == 403:
            raise KeyForbidden(r.json().get("detail", "forbidden"))
        if r.status_code != 200:
            raise KeyUnavailable(f"key holder answered {r.status_code}: {r.text[:200]}")
        return r.json()

    def chain(self, name: str) -> ChainState:
        return ChainState.from_json(self._call("GET", f"/v1/chain/{name}"))

    def public_chain(self, name: str) -> dict:
        """The public sealing keys of a class's current epochs (an edge's credential gets only these)."""
        return self._call("GET", f"/v1/chain/{name}/public")

    def whoami(self) -> str:
        """The role of this credential (KeyUnavailable if the holder is down or refuses the token)."""
        return str(self._call("GET", "/v1/whoami")["role"])

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        d = self._call("POST", "/v1/subjects", {"ids": subject_ids, "create": create})
        return {sid: (v["key_id"], base64.b64decode(v["key"])) for sid, v in d["keys"].items()}

    def destroy_subject(self, subject_id: str) -> bool:
        return bool(self._call("POST", "/v1/subjects/destroy", {"id": subject_id})["destroyed"])

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        return dict(self._call("POST", "/v1/pseudonyms/resolve", {"pseudonyms": pseudonyms})["subjects"])

    def checkpoint(self, chain: str, seq: int, head: str) -> dict:
        """The key holder's signed checkpoint of an audit chain head; CheckpointRefused (409) if it goes back."""
        return self._call("POST", "/v1/audit/checkpoint", {"chain": chain, "seq": seq, "hash": head})

    def checkpoints(self) -> dict:
        return self._call("GET", "/v1/audit/checkpoints")

    def sign_control(self, payload: bytes) -> tuple[str, bytes]:
        """The key holder's signature of a control message, as (issuer: this credential's role, signature);
        KeyForbidden for a role that may not issue control messages."""
        d = self._call("POST", "/v1/control/sign", {"payload": base64.b64encode(payload).decode()})
        return str(d["issuer"]), base64.b64decode(d["signature"])

    def control_key(self) -> str:
        """The key holder's public key (Ed25519, base64) that control messages are signed with; cached."""
        if self._control_key is None:
            self._control_key = str(self._call("GET", "/v1/control/key")["public_key"])
        return self._control_key

    def close(self) -> None:
        self._client.close()


class _Refresher:
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


def _auto_background(source: KeySource, background: bool | None) -> bool:
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
        self._refresher: _Refresher | None = None
        if _auto_background(source, background):
            self.start()

    def start(self, interval_s: float | None = None) -> EpochKeyRing:
        """Run :meth:`refresh` now and then in a daemon thread (default: every half resync period, every
        0.5 s until the first chain state has arrived)."""
        if self._refresher is None:
            ref = weakref.ref(self)

            def interval() -> float:
                ring = ref()
                return interval_s if interval_s is not None else (ring._refresh_interval() if ring is not None else 0.0)

            self._refresher = _Refresher(self, "refresh", interval, f"keyring-{self.name}")
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


BOX_INFO = b"paxsim-sealed-box-v1"
BOX_HEADER = 32 + NONCE_BYTES  # ephemeral public key, nonce


def _raw(public: X25519PublicKey) -> bytes:
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
        self._eph = _raw(eph.public_key())
        self._cipher = _box_cipher(eph.exchange(recipient), self._eph, _raw(recipient))
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
        self._key, self._public = key, _raw(key.public_key())
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
        self._refresher: _Refresher | None = None
        if _auto_background(source, background):
            self._refresher = _Refresher(self, "refresh", lambda: max(0.5, self._epoch_s / 2) if self._epoch_s else 0.5, f"pubring-{name}")

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


_AAD_TAIL = struct.Struct("<dI")


def _sighting_aad(s: Sighting) -> bytes:
    """Binds a sealed embedding to its event: id, camera, zone, capture time, dimension and any e-gate claim
    (so the claim cannot be swapped on a sealed sighting)."""
    parts = [b"sighting", s.event_id.encode(), s.camera_id.encode(), s.zone.encode(), _AAD_TAIL.pack(s.captured_at, s.dim)]
    if s.claimed_subject:
        parts.append(b"claim:" + s.claimed_subject.encode())
    return b"|".join(parts)


def seal_sighting(ring: EpochKeyRing | PublicKeyRing, s: Sighting) -> Sighting:
    """Move the embedding into ``sealed``, a sealed box to the epoch's public key bound to the event's identity
    fields: the edge that sealed it cannot open it. Raises KeyExpired if stale."""
    key_id, blob = ring.seal_box(s.embedding, s.captured_at, _sighting_aad(s))
    return msgspec.structs.replace(s, embedding=b"", sealed=blob, key_id=key_id)


def open_sighting(ring: EpochKeyRing, s: Sighting) -> Sighting:
    """The same sighting with ``embedding`` restored. Plain (unsealed) sightings are returned unchanged."""
    if not s.sealed:
        return s
    plain = ring.open_box(s.key_id, s.sealed, _sighting_aad(s))
    return msgspec.structs.replace(s, embedding=plain, sealed=b"", key_id="")


CONTROL_CLASS = "control"  # key class of control messages (erasure requests): see policy.keyd.key_classes


def _erasure_aad(req: ErasureRequest) -> bytes:
    return b"|".join([b"erasure", req.request_id.encode(), _AAD_TAIL.pack(req.requested_at, 0), req.reason.encode()])


def seal_erasure(ring: EpochKeyRing, req: ErasureRequest) -> ErasureRequest:
    """The request with its subject id and pseudonym moved into ``sealed`` (bound to the request's id and time)."""
    if req.sealed:
        return req
    plain = msgspec.msgpack.encode([req.subject_id, req.subject_ref])
    key_id, blob = ring.seal(plain, req.requested_at, _erasure_aad(req))
    return msgspec.structs.replace(req, subject_id="", subject_ref="", sealed=blob, key_id=key_id)


def open_erasure(ring: EpochKeyRing, req: ErasureRequest) -> ErasureRequest:
    """The request with its subject id and pseudonym restored; unsealed requests are returned unchanged."""
    if not req.sealed:
        return req
    plain = ring.open(req.key_id, req.sealed, _erasure_aad(req))
    try:
        subject_id, subject_ref = msgspec.msgpack.decode(plain, type=tuple[str, str])
    except msgspec.DecodeError as exc:  # authenticated but malformed: only a holder of the key could make it
        raise SealError(f"sealed erasure request {req.request_id} is malformed: {exc}") from None
    return msgspec.structs.replace(req, subject_id=subject_id, subject_ref=subject_ref, sealed=b"", key_id="")


LOCAL_ISSUER = "local"  # control messages signed by an in-process key holder (tests, single-process tools)
ISSUERS = frozenset({"gate", "dashboard", "admin", LOCAL_ISSUER})  # roles whose signed erasure requests count


def _unsigned(req: ErasureRequest) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(req, issuer="", signature=b""))


def sign_erasure(source: KeySource, req: ErasureRequest) -> ErasureRequest:
    """The request with the key holder's signature for this stage's role (call it after sealing)."""
    issuer, sig = source.sign_control(_unsigned(req))
    return msgspec.structs.replace(req, issuer=issuer, signature=sig)


def verify_erasure(source: KeySource, req: ErasureRequest) -> None:
    """SealError unless ``req`` carries a valid key-holder signature for an issuing role: a producer that can
    only write to the topic (or a stage whose role may not issue, such as a matcher) cannot make one."""
    from policy.notary import control_signature_ok

    if not req.signature:
        raise SealError(f"erasure request {req.request_id[:40]} is not signed: forged or from outside the run")
    if req.issuer not in ISSUERS:
        raise SealError(f"erasure request {req.request_id[:40]} names issuer {req.issuer[:20]!r}, which may not issue")
    if not control_signature_ok(source.control_key(), req.issuer, _unsigned(req), req.signature):
        raise SealError(f"erasure request {req.request_id[:40]} has a bad signature: forged or altered")


def _pseudonym(raw_key: bytes) -> str:
    return "ps-" + hmac.new(raw_key, b"paxsim-pseudonym", hashlib.sha256).hexdigest()[:24]


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
    ) -> None:
        self.source, self.clock, self.cache_s = source, clock, cache_s
        self.refresh_at, self.batch = refresh_at, batch
        self._cache: dict[str, tuple[float, str, AESGCM, str]] = {}
        self._lock = threading.Lock()
        self._forgets = 0  # bumped by forget(): a fetch that started before a forget must not re-insert the key
        self._forgotten: dict[str, int] = {}
        self._refresher: _Refresher | None = None
        if _auto_background(source, background):
            self.start()

    def start(self, interval_s: float | None = None) -> SubjectVault:
        """Re-confirm aging keys in a daemon thread every ``interval_s`` (default a fifth of ``cache_s``)."""
        if self._refresher is None:
            every = interval_s or self.cache_s / 5
            self._refresher = _Refresher(self, "refresh", lambda: every, "subject-vault")
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
            cipher = AESGCM(raw)
            self._cache[sid] = (now, kid, cipher, _pseudonym(raw))
            out[sid] = (kid, cipher)
        return out

    def _fresh(self, subject_id: str, now: float) -> tuple[float, str, AESGCM, str] | None:
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
                if hit is not None:
                    out[sid] = (hit[1], hit[2])
                else:
                    missing.append(sid)
        for i in range(0, len(missing), self.batch):
            part = missing[i : i + self.batch]
            fetched = self.source.subject_keys(part, create)
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
            fetched = self.source.subject_keys(part, False)
            with self._lock:
                self._install(fetched, part, now, since)
        return len(aging)

    def warm(self, subject_ids: list[str], create: bool = True) -> None:
        """Fetch many keys in one round trip (e.g. at gallery load, before consuming)."""
        self._keys(subject_ids, create)

    def seal(self, subject_id: str, plaintext: bytes, aad: bytes = b"") -> tuple[str, bytes]:
        got = self._keys([subject_id], True).get(subject_id)
        if got is None:
            raise KeyExpired(f"subject {subject_id} was erased: no key can be made for it again")
        kid, cipher = got
        nonce = secrets.token_bytes(NONCE_BYTES)
        return kid, nonce + cipher.encrypt(nonce, plaintext, aad + kid.encode())

    def open(self, subject_id: str, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        got = self._keys([subject_id], False).get(subject_id)
        if got is None or got[0] != key_id:
            OPEN_FAIL.labels("subject-erased").inc()
            raise KeyExpired(f"key {key_id} of subject {subject_id} is destroyed")
        try:
            return got[1].decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad + key_id.encode())
        except InvalidTag:
            OPEN_FAIL.labels("tampered").inc()
            raise SealError(f"payload of subject {subject_id} does not authenticate") from None

    def can_open(self, subject_id: str, key_id: str) -> bool:
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
        self._keys([subject_id], True)
        with self._lock:
            hit = self._cache.get(subject_id)
        if hit is None:  # forgotten (erased) in between
            raise KeyExpired(f"key of subject {subject_id} is destroyed")
        return hit[3]

    def existing_pseudonym(self, subject_id: str) -> str | None:
        """The subject's pseudonym if its key exists; never creates a key (use before an erasure destroys it)."""
        fetched = self.source.subject_keys([subject_id], False)
        return _pseudonym(fetched[subject_id][1]) if subject_id in fetched else None

    def resolve_all(self, pseudonyms: set[str]) -> dict[str, str]:
        """pseudonym → subject for every subject whose key still exists, consented or not (erased ones stay unknown)."""
        return self.source.resolve_pseudonyms(sorted(pseudonyms)) if pseudonyms else {}

    def resolve(self, pseudonyms: set[str], candidates: list[str]) -> dict[str, str]:
        """pseudonym → subject, for those of ``candidates`` whose key still exists (erased ones stay unknown)."""
        fetched = self.source.subject_keys(list(candidates), False)
        return {ps: sid for sid, (_kid, raw) in fetched.items() if (ps := _pseudonym(raw)) in pseudonyms}

    def forget(self, subject_id: str) -> None:
        with self._lock:
            self._cache.pop(subject_id, None)
            self._forgets += 1
            self._forgotten[subject_id] = self._forgets

    def erase(self, subject_id: str) -> bool:
        """Destroy the subject's key at the holder and here. True if a key existed."""
        self.forget(subject_id)
        return self.source.destroy_subject(subject_id)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
