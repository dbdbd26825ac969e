"""Defences switched off on purpose, so that the red team can show each of its checks failing without it.

``PAXSIM_UNSAFE_DISABLE`` names defences (comma-separated, from :data:`DEFENCES`); it is honoured only together
with ``PAXSIM_UNSAFE_NO_POLICY=1`` (the switch that already allows an unenforced policy), read by every process
of a run at its first question, and logged as an error by each. A name that is not a defence stops the process
with the list. Never set in a deployment: ``paxsim redteam --defences-off`` and its test are the only users.
"""

from __future__ import annotations

import logging
import os

ENV = "PAXSIM_UNSAFE_DISABLE"
UNSAFE_ENV = "PAXSIM_UNSAFE_NO_POLICY"

# name → the defence it switches off (where it lives)
DEFENCES: dict[str, str] = {
    "gate.unsealed": "the gate and the matcher refuse plaintext embeddings and claims in a sealed run (policy.runtime)",
    "message.checks": "field checks after decoding: dimension, sizes, finite numbers (broker.messages.check_sighting)",
    "key-id.epoch": "a key id's epoch must be digits and not ahead of now (policy.runtime, policy.crypto.ring)",
    "record.isolation": "a record that raises is dead-lettered, the stage goes on (policy.gate, matcher.service)",
    "erasure.signature": "erasure requests must carry the key holder's signature for an issuing role (policy.crypto)",
    "matcher.dedupe": "an event id decided once is skipped when delivered again (matcher.service)",
    "keyd.permissions": "each key-holder credential may do only what its role needs (policy.keyd)",
    "dashboard.revocation": "revoked and replaced dashboard tokens are refused (dashboard.auth)",
    "audit.hash": "audit verify checks every record's hash and link (policy.audit)",
    "audit.anchor": "audit verify checks the chains against the key holder's checkpoints (policy.notary)",
    "scan.topics": "the audit scan reads the topics' subject references and retention (policy.scan)",
    "scan.delivery": "the audit scan accounts admitted against decided events (policy.scan)",
    "scan.stores": "the audit scan reads the stores at rest and the live ones (policy.scan)",
}

log = logging.getLogger("paxsim.faults")
_cache: frozenset[str] | None = None


class FaultError(ValueError):
    """``PAXSIM_UNSAFE_DISABLE`` names something that is not a defence."""


def switched_off(environ: dict[str, str] | None = None) -> frozenset[str]:
    """The defences this process runs without (empty unless both variables are set)."""
    env = os.environ if environ is None else environ
    names = frozenset(n.strip() for n in env.get(ENV, "").split(",") if n.strip())
    unknown = sorted(names - DEFENCES.keys())
    if unknown:
        raise FaultError(f"{ENV}: {', '.join(unknown)} is not a defence (one of: {', '.join(DEFENCES)})")
    if names and env.get(UNSAFE_ENV) != "1":
        raise FaultError(f"{ENV} is honoured only with {UNSAFE_ENV}=1: it switches defences off")
    return names


def disabled(name: str) -> bool:
    """Is the defence ``name`` switched off in this process? (Read once; a cheap set lookup after that.)"""
    global _cache
    if _cache is None:
        _cache = switched_off()
        for n in sorted(_cache):
            log.error("DEFENCE SWITCHED OFF for a red-team run", extra={"defence": n, "what": DEFENCES[n]})
    if name not in DEFENCES:
        raise FaultError(f"{name!r} is not a defence")
    return name in _cache


def reset() -> None:
    """Read the environment again at the next question (tests that change it in-process)."""
    global _cache
    _cache = None
