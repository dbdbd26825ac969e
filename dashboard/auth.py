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
    """Token hash → principal. ``authenticate`` compares hashes in constant time."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._by_hash: dict[str, Principal] = {}
        self._ephemeral: set[str] = set()  # from the environment: never written to the file
        self._lock = threading.Lock()
        if path is not None and path.exists():
            for row in json.loads(path.read_text()):
                self._by_hash[row["sha256"]] = Principal(row["name"], Role(row["role"]))

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

    def add(self, token: str, name: str, role: str | Role, persist: bool = True) -> Principal:
        try:
            r = Role(role)
        except ValueError:
            raise TokenError(f"unknown role {role!r}; roles: {[x.value for x in Role]}") from None
        if not name or len(token) < 16:
            raise TokenError("a token needs a name and a secret of at least 16 characters")
        p = Principal(name, r)
        with self._lock:
            self._by_hash[token_hash(token)] = p
            if not persist:
                self._ephemeral.add(token_hash(token))
            else:
                self._save()
        return p

    def issue(self, name: str, role: str | Role) -> str:
        """Create a token for ``name`` with ``role``; returns the secret (shown once, stored hashed)."""
        token = secrets.token_urlsafe(24)
        self.add(token, name, role)
        return token

    def revoke(self, name: str) -> int:
        with self._lock:
            gone = [h for h, p in self._by_hash.items() if p.name == name]
            for h in gone:
                del self._by_hash[h]
            self._save()
        return len(gone)

    def principals(self) -> list[Principal]:
        return sorted(set(self._by_hash.values()), key=lambda p: p.name)

    def authenticate(self, token: str) -> Principal | None:
        want = token_hash(token)
        found = None
        for h, p in self._by_hash.items():  # constant time per entry; no early exit on a hit
            if hmac.compare_digest(h, want):
                found = p
        return found

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"sha256": h, "name": p.name, "role": p.role.value} for h, p in self._by_hash.items() if h not in self._ephemeral]
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f, indent=1)
        tmp.replace(self.path)
