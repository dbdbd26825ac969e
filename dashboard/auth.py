"""API tokens and roles.

A token is ``id.secret``, given once to its holder; only the id and an scrypt hash of the secret are stored
(``tokens.json`` in the dashboard's state dir, 0600), with an expiry; ``PAXSIM_DASHBOARD_TOKENS`` holds
testbed tokens in the environment (hashed in memory only). Each token has a name (who holds it) and one role:

* ``admin``: everything, including consent changes, erasure, gallery changes and tokens;
* ``operator``: runs the airport: trajectories, gallery size, the policy in force;
* ``auditor``: reads consent records, erasure status and the audit log; never trajectories.

Aggregates (``/api/summary``, the live panels, ``/metrics``) carry no identity and need no token.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core import faults
from core.files import write_private

log = logging.getLogger("paxsim.dashboard.auth")


class Role(str, enum.Enum):
    admin = "admin"
    operator = "operator"
    auditor = "auditor"


TOKENS_ENV = "PAXSIM_DASHBOARD_TOKENS"  # "role:name:token,role:name:token" (testbeds; tokens in clear)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenError(ValueError):
    """A token definition that makes no sense (unknown role, empty name or secret)."""


SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # ~16 MiB, tens of ms per check on one core (RFC 7914)
DEFAULT_TTL_S = 90 * 86_400.0  # a token issued without an explicit lifetime expires after 90 days


def _scrypt(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode("utf-8", "surrogatepass"), salt=salt, **SCRYPT).hex()


@dataclass(frozen=True, slots=True)
class _Entry:
    """A token at rest: never the secret; scrypt of it under its own salt (file tokens, looked up by their
    public id), or SHA-256 (environment tokens, which live in memory only, and files written before scrypt)."""

    principal: Principal
    digest: str
    salt: str = ""  # hex; empty: ``digest`` is a SHA-256
    expires_at: float | None = None

    def valid(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


class TokenStore:
    """Token id → principal, secrets stored as scrypt hashes (``id.secret``: the id finds the row, scrypt checks
    the secret, in constant time). A verified token is remembered in memory (by its SHA-256) until the file
    changes, so each request does not pay for scrypt; an unknown id costs nothing.

    The file is the source of truth and is re-read whenever it changes (checked on every authentication, a
    ``stat``): a token issued or revoked by ``paxsim dashboard-token`` in another process takes effect at the
    next request, without a restart. One token per name: issuing again (a new role) replaces the old one.
    Every file token expires (``ttl_s``, default 90 days). Revoking a name also disables environment tokens of
    that name (the file keeps the revocation)."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._env: dict[str, _Entry] = {}  # sha256 → entry, from the environment: never written to the file
        self._file: dict[str, _Entry] = {}  # token id (or "sha256:…" for rows written before scrypt) → entry
        self._revoked: set[str] = set()  # names whose file tokens are refused (until the name is issued a new one)
        # names whose environment tokens are refused for good: issuing the name again (a file token) does not bring
        # them back, in this process or any other reading the file (the dashboard reloads it)
        self._revoked_env: set[str] = set()
        self._verified: dict[str, str] = {}  # sha256 of a token checked once → its key in _file/_env
        self._sig: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._reload()

    @classmethod
    def from_env(cls, path: Path | None, environ: dict[str, str] | None = None) -> TokenStore:
        store = cls(path)
        spec = (os.environ if environ is None else environ).get(TOKENS_ENV, "")
        for item in filter(None, (s.strip() for s in spec.split(","))):
            parts = item.split(":", 2)
            if len(parts) != 3:
                raise TokenError(f"{TOKENS_ENV}: expected role:name:token, got {item.split(':', 1)[0]}:…")
            store.add(parts[2], parts[1], parts[0], persist=False)
        return store

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat() if self.path is not None else None
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino) if st is not None else None

    def _reload(self) -> None:
        """Re-read the file if it changed since the last look."""
        if self.path is None:
            return
        sig = self._signature()
        if sig == self._sig:
            return
        with self._lock:
            rows = json.loads(self.path.read_text()) if sig is not None else []
            self._file = {}
            legacy = 0
            for r in rows:
                p = Principal(r["name"], Role(r["role"])) if "role" in r else None
                if p is not None and "scrypt" in r:
                    self._file[r["id"]] = _Entry(p, r["scrypt"], r["salt"], r.get("expires_at"))
                elif p is not None:
                    legacy += 1  # a bare sha256 row: anybody who can write the file could add one: never a credential
            if legacy:
                log.warning("token file rows without scrypt ignored: re-issue them", extra={"rows": legacy, "path": str(self.path)})
            self._revoked = {r["name"] for r in rows if r.get("revoked")}
            self._revoked_env = {r["name"] for r in rows if r.get("revoked_env")}
            self._verified.clear()
            self._sig = sig

    @staticmethod
    def _role(role: str | Role) -> Role:
        try:
            return Role(role)
        except ValueError:
            raise TokenError(f"unknown role {role!r}; roles: {[x.value for x in Role]}") from None

    def add(self, token: str, name: str, role: str | Role, persist: bool = True, ttl_s: float | None = DEFAULT_TTL_S) -> Principal:
        """Register ``token``. Persisted tokens must be ``id.secret`` (as :meth:`issue` makes them)."""
        r = self._role(role)
        if not name or len(token) < 16:
            raise TokenError("a token needs a name and a secret of at least 16 characters")
        p = Principal(name, r)
        if not persist:
            with self._lock:
                self._env[token_hash(token)] = _Entry(p, token_hash(token))
                self._verified.clear()
            return p
        tid, dot, secret = token.partition(".")
        if not dot or not tid or len(secret) < 16:
            raise TokenError("a stored token is id.secret (paxsim dashboard-token issue makes one)")
        salt = secrets.token_bytes(16)
        entry = _Entry(p, _scrypt(secret, salt), salt.hex(), self.clock() + ttl_s if ttl_s is not None else None)
        self._reload()
        with self._lock:
            if not faults.disabled("dashboard.revocation"):  # one token per name: re-issuing kills the old secret
                self._file = {k: e for k, e in self._file.items() if e.principal.name != name}
            self._file[tid] = entry
            self._revoked.discard(name)
            self._verified.clear()
            self._save()
        return p

    def issue(self, name: str, role: str | Role, ttl_s: float | None = DEFAULT_TTL_S) -> str:
        """Create a token for ``name`` with ``role``, replacing any earlier one of that name; returns the secret
        (shown once, stored as scrypt). It expires after ``ttl_s`` (None: never)."""
        self._role(role)
        token = f"{secrets.token_hex(6)}.{secrets.token_urlsafe(24)}"
        self.add(token, name, role, ttl_s=ttl_s)
        return token

    @contextlib.contextmanager
    def temporary(self, name: str, role: str | Role, ttl_s: float = 900.0) -> Iterator[str]:
        """A token for one job (an audit scan): revoked when the block ends, and expiring after ``ttl_s`` even
        if the process dies before it could revoke it."""
        token = self.issue(name, role, ttl_s=ttl_s)
        try:
            yield token
        finally:
            self.revoke(name)

    def revoke(self, name: str) -> int:
        """Refuse every token of ``name`` from now on (file and environment); returns how many there were."""
        self._reload()
        with self._lock:
            gone = [k for k, e in {**self._env, **self._file}.items() if e.principal.name == name]
            if not faults.disabled("dashboard.revocation"):
                self._file = {k: e for k, e in self._file.items() if e.principal.name != name}
            self._revoked.add(name)
            self._revoked_env.add(name)
            self._verified.clear()
            self._save()
        return len(gone)

    def entries(self) -> list[tuple[Principal, float | None]]:
        """Every token holder that may authenticate now, with its expiry (None: never)."""
        self._reload()
        now = self.clock()
        with self._lock:
            live = [e for e in {**self._env, **self._file}.values() if not self._refused(e) and e.valid(now)]
        return sorted({(e.principal, e.expires_at) for e in live}, key=lambda x: x[0].name)

    def principals(self) -> list[Principal]:
        return sorted({p for p, _exp in self.entries()}, key=lambda p: p.name)

    def _refused(self, entry: _Entry) -> bool:
        """Revoked: a file token until its name is issued again; an environment token for good (issuing the name
        again makes a new file token and brings no revoked environment token back)."""
        if faults.disabled("dashboard.revocation"):
            return False
        if entry.salt:
            return entry.principal.name in self._revoked
        return entry.principal.name in self._revoked_env or entry.principal.name in self._revoked

    def _usable(self, entry: _Entry | None) -> Principal | None:
        if entry is None or self._refused(entry) or not entry.valid(self.clock()):
            return None
        return entry.principal

    def authenticate(self, token: str, slow: bool = True) -> Principal | None:
        """The token's principal, or None. ``slow=False`` (a throttled client) answers only from what costs no
        scrypt: tokens verified before and environment tokens."""
        self._reload()
        want = token_hash(token)
        with self._lock:
            key = self._verified.get(want)
            if key is not None:
                return self._usable(self._env.get(key) or self._file.get(key))
            tid, dot, secret = token.partition(".")
            entry = self._file.get(tid) if dot and tid else None
            if entry is not None and entry.salt:
                salt = bytes.fromhex(entry.salt)
        if entry is not None and entry.salt:
            if not slow:
                return None
            ok = hmac.compare_digest(_scrypt(secret, salt), entry.digest)  # outside the lock: ~tens of ms
            with self._lock:
                if not ok or self._file.get(tid) is not entry:  # wrong secret, or re-issued/revoked meanwhile
                    return None
                self._verified[want] = tid
                return self._usable(entry)
        found_key = None
        with self._lock:
            for k, e in self._env.items():  # file tokens are scrypt only (above)
                if hmac.compare_digest(e.digest, want):  # constant time per entry; no early exit on a hit
                    found_key = k
            if found_key is None:
                return None
            self._verified[want] = found_key
            return self._usable(self._env.get(found_key))

    def _save(self) -> None:
        """Under ``_lock``: write the file (0600, atomically) and remember its signature as read."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, object]] = []
        for k, e in self._file.items():
            row: dict[str, object] = {"name": e.principal.name, "role": e.principal.role.value, "expires_at": e.expires_at}
            row.update({"id": k, "scrypt": e.digest, "salt": e.salt})
            rows.append(row)
        rows += [{"name": n, "revoked": True} for n in sorted(self._revoked)]
        rows += [{"name": n, "revoked_env": True} for n in sorted(self._revoked_env)]
        write_private(self.path, json.dumps(rows, indent=1).encode())
        self._sig = self._signature()


class FailedAuth:
    """Failed authentications per client: a token bucket (``burst``, refilled at ``per_minute``) decides when a
    client is answered 429 instead of 401, and at most one audit record per client per ``audit_every_s`` is
    written (counting what it stands for), so a flood of bad tokens costs the caller, not the audit log or disk.
    Remembers at most ``max_clients`` clients (least recently failing dropped first)."""

    def __init__(
        self, burst: int = 20, per_minute: float = 30.0, audit_every_s: float = 10.0, max_clients: int = 10_000, clock=time.monotonic
    ) -> None:  # noqa: ANN001
        self.burst, self.rate, self.audit_every_s, self.max_clients, self.clock = (
            burst,
            per_minute / 60.0,
            audit_every_s,
            max_clients,
            clock,
        )
        self._clients: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, last refill, last audit, unaudited]
        self._lock = threading.Lock()

    def throttled(self, client: str) -> bool:
        """True while ``client`` has no failure left to spend: its next request is answered 429 without checking
        its token (a flood of guesses costs no scrypt)."""
        now = self.clock()
        with self._lock:
            st = self._clients.get(client)
            return st is not None and min(float(self.burst), st[0] + (now - st[1]) * self.rate) < 1.0

    def note(self, client: str) -> tuple[int | None, float | None]:
        """Record one failure. Returns (failures to audit now, or None to stay quiet; seconds to wait, or None)."""
        now = self.clock()
        with self._lock:
            st = self._clients.pop(client, None) or [float(self.burst), now, -1e18, 0.0]
            self._clients[client] = st
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            st[0] = min(float(self.burst), st[0] + (now - st[1]) * self.rate)
            st[1] = now
            st[3] += 1
            audit = None
            if now - st[2] >= self.audit_every_s:
                audit, st[2], st[3] = int(st[3]), now, 0.0
            if st[0] >= 1.0:
                st[0] -= 1.0
                return audit, None
            return audit, (1.0 - st[0]) / self.rate
