"""Policy filters between stages: small units that each decide allow/deny and are counted and timed.

A chain asks each filter in order and stops at the first deny. Every decision increments
``paxsim_policy_decisions_total{stage,rule,decision}`` and is timed in ``paxsim_policy_decision_seconds``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, TypeVar

from prometheus_client import Counter, Histogram

from broker.messages import Sighting

DECISIONS = Counter("paxsim_policy_decisions_total", "Policy decisions by stage, rule and outcome", ["stage", "rule", "decision"])
DECISION_SECONDS = Histogram(
    "paxsim_policy_decision_seconds",
    "Time one policy rule took to decide",
    ["stage", "rule"],
    buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2),
)

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    rule: str
    reason: str = ""


ALLOW = Decision(True, "")


class Filter(Protocol[C]):
    name: str

    def __call__(self, ctx: C) -> Decision: ...


@dataclass(slots=True)
class Rule(Generic[C]):
    """A named predicate: ``check(ctx)`` returns a reason string to deny, or None to allow."""

    name: str
    check: Callable[[C], str | None]

    def __call__(self, ctx: C) -> Decision:
        reason = self.check(ctx)
        return ALLOW if reason is None else Decision(False, self.name, reason)


class Chain(Generic[C]):
    """Run filters in order; the first deny wins. Counts and times every rule it runs."""

    def __init__(self, stage: str, filters: list[Filter[C]]) -> None:
        self.stage = stage
        self.filters = filters
        self._metrics = {
            f.name: (
                DECISIONS.labels(stage, f.name, "allow"),
                DECISIONS.labels(stage, f.name, "deny"),
                DECISION_SECONDS.labels(stage, f.name),
            )
            for f in filters
        }

    def __call__(self, ctx: C) -> Decision:
        for f in self.filters:
            allow_c, deny_c, hist = self._metrics[f.name]
            t0 = time.perf_counter()
            d = f(ctx)
            hist.observe(time.perf_counter() - t0)
            if d.allow:
                allow_c.inc()
            else:
                deny_c.inc()
                return d
        return ALLOW


# --- broker → matcher gate ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateContext:
    sighting: Sighting
    now: float


def gate_chain(biometric_zones: set[str], zone_purpose: dict[str, str], max_age_s: float) -> Chain[GateContext]:
    """Filters applied before a sighting may reach the matcher."""

    def biometric_zone(ctx: GateContext) -> str | None:
        z = ctx.sighting.zone
        if z not in biometric_zones or z not in zone_purpose:
            return f"zone {z!r} is not a biometric zone"
        return None

    def fresh(ctx: GateContext) -> str | None:
        age = ctx.now - ctx.sighting.captured_at
        return f"stale by {age:.1f}s" if age > max_age_s else None

    return Chain("gate", [Rule("biometric_zone", biometric_zone), Rule("fresh", fresh)])


# --- matcher → stores (right after the 1:N search) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PostMatchContext:
    subject_id: str | None  # None: no gallery entry within threshold
    purpose: str
    zone: str
    at: float


def post_match_chain(is_allowed: Callable[[str, str, str, float], bool]) -> Chain[PostMatchContext]:
    """Filters between a search result and anything stored or published about a subject."""

    def known(ctx: PostMatchContext) -> str | None:
        return "no consented enrolee within threshold" if ctx.subject_id is None else None

    def consented(ctx: PostMatchContext) -> str | None:
        assert ctx.subject_id is not None
        if not is_allowed(ctx.subject_id, ctx.purpose, ctx.zone, ctx.at):
            return f"no active consent for {ctx.purpose} in {ctx.zone}"
        return None

    return Chain("post_match", [Rule("known_face", known), Rule("consent", consented)])
