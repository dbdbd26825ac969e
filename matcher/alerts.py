"""Rule-based alerts on trajectory updates, gated by policy. Pure functions: no state, no I/O.

Rules:

- ``dwell``: a subject stayed in a restricted zone longer than that zone's limit.
- ``implausible-transition``: the subject reached a zone faster than walking allows (``TrackUpdate.plausible``
  is False) — a probable identification mismatch, raised for review, never as evidence against the person.

Alert ids are deterministic (rule, subject, zone, visit start), so the updates of one visit that keep
breaking a rule give the same ``alert_id``: deduplicate on it (a replay after a crash does too).

:func:`flag_rates` measures the false-flag rate on a synthetic population, where the ground truth says nobody
did anything wrong: every alert there is a false flag.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from broker.messages import Alert, TrackUpdate

DWELL = "dwell"
IMPLAUSIBLE = "implausible-transition"
ALERTS_ENV = "PAXSIM_ALERTS"
DEFAULT_ALERTS_PATH = Path(__file__).with_name("default-alerts.yaml")


class AlertPolicyError(ValueError):
    """The alert rules file is unreadable or invalid; the text names the file and the field."""


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """What may raise an alert. Off unless enabled; only for the purposes listed (empty = none)."""

    enabled: bool = False
    allowed_purposes: frozenset[str] = frozenset()
    dwell_limits_s: Mapping[str, float] = field(default_factory=dict)  # restricted zone -> max dwell
    implausible_transitions: bool = True

    def permits(self, purpose: str) -> bool:
        return self.enabled and purpose in self.allowed_purposes

    @classmethod
    def load(cls, path: str | Path | None = None) -> AlertPolicy:
        """Rules from ``path``, else ``$PAXSIM_ALERTS``, else the packaged default (alerts off)."""
        path = Path(path or os.environ.get(ALERTS_ENV) or DEFAULT_ALERTS_PATH)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AlertPolicyError(f"{path}: cannot read alert rules: {exc}") from None
        if not isinstance(raw, dict):
            raise AlertPolicyError(f"{path}: expected a mapping of alert settings")
        unknown = set(raw) - {"enabled", "purposes", "implausible_transitions", "dwell_limits_s"}
        if unknown:
            raise AlertPolicyError(f"{path}: unknown keys {sorted(unknown)}")
        limits = raw.get("dwell_limits_s") or {}
        purposes = raw.get("purposes") or []
        if not isinstance(limits, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in limits.values()):
            raise AlertPolicyError(f"{path}: dwell_limits_s must map zones to positive seconds")
        if not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes):
            raise AlertPolicyError(f"{path}: purposes must be a list of purpose names")
        return cls(
            bool(raw.get("enabled", False)),
            frozenset(purposes),
            {str(z): float(v) for z, v in limits.items()},
            bool(raw.get("implausible_transitions", True)),
        )


def _alert_id(kind: str, update: TrackUpdate, visit_start: float) -> str:
    key = f"{kind}|{update.subject_id}|{update.zone}|{visit_start:.3f}".encode()
    return f"{kind}-{hashlib.blake2s(key, digest_size=10).hexdigest()}"


def dwell_alert(update: TrackUpdate, policy: AlertPolicy, purpose: str) -> Alert | None:
    """Alert when the current visit's dwell exceeds the zone's limit (None otherwise or if not permitted)."""
    limit = policy.dwell_limits_s.get(update.zone)
    if limit is None or not policy.permits(purpose) or update.dwell_s <= limit:
        return None
    start = update.captured_at - update.dwell_s
    return Alert(
        alert_id=_alert_id(DWELL, update, start),
        kind=DWELL,
        at=update.at,
        zone=update.zone,
        subject_id=update.subject_id,
        detail=f"dwell {update.dwell_s:.0f} s > limit {limit:.0f} s",
    )


def implausible_alert(update: TrackUpdate, policy: AlertPolicy, purpose: str) -> Alert | None:
    """Alert on a transition faster than walking (a probable mismatch)."""
    if update.plausible or not policy.implausible_transitions or not policy.permits(purpose):
        return None
    start = update.captured_at - update.dwell_s
    return Alert(
        alert_id=_alert_id(IMPLAUSIBLE, update, start),
        kind=IMPLAUSIBLE,
        at=update.at,
        zone=update.zone,
        subject_id=update.subject_id,
        detail=f"{update.prev_zone} -> {update.zone} faster than walking: probable mismatch",
    )


def evaluate(update: TrackUpdate, policy: AlertPolicy, purpose: str) -> list[Alert]:
    """Every alert one trajectory update raises under ``policy`` for the sighting's ``purpose``."""
    out = []
    for rule in (implausible_alert, dwell_alert):
        a = rule(update, policy, purpose)
        if a is not None:
            out.append(a)
    return out


@dataclass(frozen=True, slots=True)
class FlagRates:
    alerts: int  # distinct alert ids
    subjects: int  # subjects observed
    flagged_subjects: int
    transitions: int
    implausible_transitions: int

    @property
    def subject_flag_rate(self) -> float:
        return self.flagged_subjects / self.subjects if self.subjects else float("nan")

    @property
    def transition_flag_rate(self) -> float:
        return self.implausible_transitions / self.transitions if self.transitions else float("nan")


def flag_rates(alerts: Iterable[Alert], subjects: Iterable[str], transitions: int, implausible: int) -> FlagRates:
    """False-flag rates when ground truth says nobody misbehaved (synthetic population)."""
    uniq = {a.alert_id: a for a in alerts}
    subj = set(subjects)
    flagged = {a.subject_id for a in uniq.values() if a.subject_id is not None}
    return FlagRates(len(uniq), len(subj), len(flagged & subj), transitions, implausible)
