"""``paxsim preflight``: refuse a compose deployment that still runs on the example secrets.

The compose testbed (deploy/docker-compose.yml) runs this one-shot service before the broker, the key holder
and Grafana start. It reads the secrets from its environment (deploy/.env) and names every one that is missing,
still the value shipped in deploy/.env.example, or too weak, with the command that makes a good one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from policy.keyd import MIN_TOKEN_CHARS

# values deploy/.env.example ships: public, so never a secret (tests/deploy keeps this list and the file in step)
# the key holder's admin token (enrolment, tools) and one credential per stage role (policy.keyd.PERMISSIONS)
KEYD_TOKENS = ("PAXSIM_KEYD_TOKEN", *(f"PAXSIM_KEYD_TOKEN_{role.upper()}" for role in ("edge", "gate", "matcher", "dashboard", "auditor")))
SHIPPED = {
    "KAFKA_CLUSTER_ID": {"CvlxKcJ7RDajXHSyc3MNBw"},
    "GRAFANA_ADMIN_PASSWORD": {"change-me-before-use", "admin"},
    **{name: {"change-me-to-a-long-random-token"} for name in KEYD_TOKENS},
}
MIN_PASSWORD_CHARS = 12

MAKE = {
    "KAFKA_CLUSTER_ID": "python3 -c \"import uuid,base64;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('='))\"",
    "GRAFANA_ADMIN_PASSWORD": 'python3 -c "import secrets; print(secrets.token_urlsafe(18))"',
    **{name: 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"' for name in KEYD_TOKENS},
}


def _cluster_id_problem(value: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(value) != 22 or len(raw) != 16:
        return "is not a base64url UUID of 16 bytes (22 characters)"
    return None


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
        elif name in KEYD_TOKENS and len(value) < MIN_TOKEN_CHARS:
            why = f"is shorter than {MIN_TOKEN_CHARS} characters"
        elif name in KEYD_TOKENS and sum(env.get(n, "").strip() == value for n in KEYD_TOKENS) > 1:
            why = "is the same as another key-holder token (one credential per stage)"
        if why:
            out.append(f"{name} {why}; make one with: {MAKE[name]}")
    return out
