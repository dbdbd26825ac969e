"""API tokens and roles.

A token is a random secret given once to its holder; only its SHA-256 is stored (``tokens.json`` in the
dashboard's state dir, or ``PAXSIM_DASHBOARD_TOKENS`` for a testbed). Each token has a name (who holds it)
and one role:

* ``admin``: everything, including consent changes, erasure, gallery changes and tokens;
* ``operator``: runs the airport: trajectories, gallery size, the policy in force;
* ``auditor``: reads consent records, erasure status and the audit log; never trajectories.

Aggregates (``/api/summary``, the live panels, ``/metrics``) carry no identity and need no token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


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


class TokenStore:
    """Token hash → principal. ``authenticate`` compares hashes in constant time.

    The file is the source of truth and is re-read whenever it changes (checked on every authentication, a
    ``stat``): a token issued or revoked by ``paxsim dashboard-token`` in another process takes effect at the
    next request, without a restart. One token per name: issuing again (a new role) replaces the old one.
    Revoking a name also disables environment tokens of that name (the file keeps the revocation)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._by_hash: dict[str, Principal] = {}
        self._env: dict[str, Principal] = {}  # from the environment: never written to the file
        self._file: dict[str, Principal] = {}
        self._revoked: set[str] = set()  # names whose tokens are refused, environment ones included
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
            self._file = {r["sha256"]: Principal(r["name"], Role(r["role"])) for r in rows if "sha256" in r}
            self._revoked = {r["name"] for r in rows if r.get("revoked")}
            self._sig = sig
            self._rebuild()

    def _rebuild(self) -> None:
        merged = {**self._env, **self._file}
        self._by_hash = {h: p for h, p in merged.items() if p.name not in self._revoked}

    def add(self, token: str, name: str, role: str | Role, persist: bool = True) -> Principal:
        try:
            r = Role(role)
        except ValueError:
            raise TokenError(f"unknown role {role!r}; roles: {[x.value for x in Role]}") from None
        if not name or len(token) < 16:
            raise TokenError("a token needs a name and a secret of at least 16 characters")
        p = Principal(name, r)
        if persist:
            self._reload()
        with self._lock:
            if not persist:
                self._env[token_hash(token)] = p
            else:
                self._file = {h: q for h, q in self._file.items() if q.name != name}  # one token per name
                self._file[token_hash(token)] = p
                self._revoked.discard(name)
                self._save()
            self._rebuild()
        return p

    def issue(self, name: str, role: str | Role) -> str:
        """Create a token for ``name`` with ``role``, replacing any earlier one of that name; returns the secret
        (shown once, stored hashed)."""
        token = secrets.token_urlsafe(24)
        self.add(token, name, role)
        return token

    def revoke(self, name: str) -> int:
        """Refuse every token of ``name`` from now on (file and environment); returns how many there were."""
        self._reload()
        with self._lock:
            gone = [h for h, p in {**self._env, **self._file}.items() if p.name == name]
            self._file = {h: p for h, p in self._file.items() if p.name != name}
            self._revoked.add(name)
            self._save()
            self._rebuild()
        return len(gone)

    def principals(self) -> list[Principal]:
        self._reload()
        return sorted(set(self._by_hash.values()), key=lambda p: p.name)

    def authenticate(self, token: str) -> Principal | None:
        self._reload()
        want = token_hash(token)
        found = None
        for h, p in list(self._by_hash.items()):  # constant time per entry; no early exit on a hit
            if hmac.compare_digest(h, want):
                found = p
        return found

    def _save(self) -> None:
        """Under ``_lock``: write the file (0600, atomically) and remember its signature as read."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, object]] = [{"sha256": h, "name": p.name, "role": p.role.value} for h, p in self._file.items()]
        rows += [{"name": n, "revoked": True} for n in sorted(self._revoked)]
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f, indent=1)
        tmp.replace(self.path)
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
