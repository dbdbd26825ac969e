"""``paxsim preflight``: refuse a compose deployment that still runs on the example secrets.

The compose testbed (deploy/docker-compose.yml) runs this one-shot service before the broker, the key holder
and Grafana start. It reads the secrets of deploy/.env from its environment and the key holder's credentials
from their files (``PAXSIM_KEYD_TOKEN_FILES``: ``role:path,...``, compose secrets made by
deploy/make-keyd-tokens.sh), and names every one that is missing, still the value shipped in
deploy/.env.example, too weak, or shared between roles, with the command that makes a good one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

from policy.keyd import MIN_TOKEN_CHARS

# values deploy/.env.example ships: public, so never a secret (tests/deploy keeps this list and the file in step)
SHIPPED = {
    "KAFKA_CLUSTER_ID": {"CvlxKcJ7RDajXHSyc3MNBw"},
    "GRAFANA_ADMIN_PASSWORD": {"change-me-before-use", "admin"},
}
MIN_PASSWORD_CHARS = 12
# the key holder's admin credential (enrolment, tools) and one per stage role (policy.keyd.PERMISSIONS)
KEYD_ROLES = ("admin", "edge", "gate", "matcher", "dashboard", "auditor")
KEYD_FILES_ENV = "PAXSIM_KEYD_TOKEN_FILES"
MAKE_KEYD = "deploy/make-keyd-tokens.sh"

MAKE = {
    "KAFKA_CLUSTER_ID": "python3 -c \"import uuid,base64;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('='))\"",
    "GRAFANA_ADMIN_PASSWORD": 'python3 -c "import secrets; print(secrets.token_urlsafe(18))"',
}


def _cluster_id_problem(value: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(value) != 22 or len(raw) != 16:
        return "is not a base64url UUID of 16 bytes (22 characters)"
    return None


def _keyd_problems(env: Mapping[str, str]) -> list[str]:
    files = dict(item.strip().partition(":")[::2] for item in env.get(KEYD_FILES_ENV, "").split(",") if item.strip())
    tokens: dict[str, str] = {}
    out = []
    for role in KEYD_ROLES:
        path = files.get(role)
        try:
            value = Path(path).read_text().strip() if path else ""
        except OSError:
            value = ""
        why = None
        if not value:
            why = "is missing"
        elif "change-me" in value.lower():
            why = "is an example value"
        elif len(value) < MIN_TOKEN_CHARS:
            why = f"is shorter than {MIN_TOKEN_CHARS} characters"
        elif value in tokens.values():
            why = "is the same as another role's (one credential per stage)"
        tokens[role] = value
        if why:
            out.append(f"the key holder's {role} credential ({path or 'no file given'}) {why}; make them with: {MAKE_KEYD}")
    return out


def problems(env: Mapping[str, str]) -> list[str]:
    """One line per secret that must change; empty when the deployment may start."""
    out = []
    for name in SHIPPED:
        value = env.get(name, "").strip()
        why = None
        if not value:
            why = "is not set"
        elif value in SHIPPED[name] or "change-me" in value.lower():
            why = "is still the example value from deploy/.env.example"
        elif name == "KAFKA_CLUSTER_ID":
            why = _cluster_id_problem(value)
        elif name == "GRAFANA_ADMIN_PASSWORD" and len(value) < MIN_PASSWORD_CHARS:
            why = f"is shorter than {MIN_PASSWORD_CHARS} characters"
        if why:
            out.append(f"{name} {why}; make one with: {MAKE[name]}")
    return out + _keyd_problems(env)
