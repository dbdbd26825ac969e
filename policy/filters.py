"""Policy filters at every stage boundary: small units that each decide allow/deny, counted and timed.

A filter unit has a ``name`` and ``decide(ctx, policy) -> Decision``; a :class:`Rule` is written once, as a
compiler from a policy to ``check(ctx) -> reason | None``. A :class:`Chain` pins the policy in force once per call
(hot reload swaps it between calls, never inside one), asks each unit in order, stops at the first deny
and returns a :class:`Decision` that records the policy version. A chain is itself a unit, so chains
compose. Every unit's run increments ``paxsim_policy_decisions_total{stage,rule,decision}`` and is timed
in ``paxsim_policy_decision_seconds{stage,rule}`` (sub-microsecond buckets; see :class:`RuleStats`); ``on_decision`` (e.g. an audit writer) sees every result.

Stages and their rules:

* ``edge`` (camera → broker): ``biometric_zone`` (else counts only), ``no_image_bytes``, ``quality``.
* ``gate`` (broker → matcher): ``biometric_zone``, ``purpose``, ``fresh`` (stale or from the future).
* ``post_match`` (matcher → stores): ``known_face``, ``consent`` (active, unexpired, zone-scoped, at event time).
* ``store`` (anything written to a store): ``retention`` (the item's purpose TTL has not already passed).
* ``export`` (stores → outside): ``export_purpose`` (exportable at all), ``purpose_binding`` (subject consented).
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from broker.messages import Sighting
from policy import metricnames as policy_metrics
from policy.consent import ANY_ZONE
from policy.policyfile import Policy, PolicyHolder, PurposeRule, ZoneRule

BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2)


class RuleStats:
    """Counts and latency histogram of one (stage, rule), kept in plain ints and read at scrape time.

    prometheus_client's Counter/Histogram cost ~4.5 µs per rule and decision (locks); these cost ~0.5 µs.
    Update them from one thread (the event loop); a scrape may see a count one decision ahead of its bucket.
    """

    __slots__ = ("stage", "rule", "allow", "deny", "buckets", "sum")

    def __init__(self, stage: str, rule: str) -> None:
        self.stage, self.rule = stage, rule
        self.allow = self.deny = 0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


_STATS: dict[tuple[str, str], RuleStats] = {}


def rule_stats(stage: str, rule: str) -> RuleStats:
    st = _STATS.get((stage, rule))
    if st is None:
        st = _STATS[(stage, rule)] = RuleStats(stage, rule)
    return st


class _Counts:
    """One chain's decision counts, kept by the chain on its hot path and read at scrape time.

    ``passed`` = decisions every unit allowed; ``deny[i]`` = denials by unit ``i``. Unit ``i`` allowed
    ``passed + sum(deny[i+1:])`` times. When the chain is collected its counts are folded into the
    units' :class:`RuleStats` (so the exported counters never go down).
    """

    __slots__ = ("stats", "passed", "deny")

    def __init__(self, stats: list[RuleStats]) -> None:
        self.stats = stats
        self.passed = 0
        self.deny = [0] * len(stats)

    def totals(self) -> list[tuple[RuleStats, int, int]]:
        out, later = [], 0
        for i in range(len(self.stats) - 1, -1, -1):
            out.append((self.stats[i], self.passed + later, self.deny[i]))
            later += self.deny[i]
        return out


_LIVE: set[_Counts] = set()
_COUNTS_LOCK = threading.Lock()


def _fold(counts: _Counts) -> None:
    with _COUNTS_LOCK:
        _LIVE.discard(counts)
        for st, allow, deny in counts.totals():
            st.allow += allow
            st.deny += deny


class _PolicyCollector(Collector):
    def collect(self):  # noqa: ANN201
        decisions = CounterMetricFamily(
            policy_metrics.DECISIONS_TOTAL.removesuffix("_total"),
            "Policy decisions by stage, rule and outcome",
            labels=["stage", "rule", "decision"],
        )
        seconds = HistogramMetricFamily(policy_metrics.DECISION_SECONDS, "Time one policy rule took to decide", labels=["stage", "rule"])
        with _COUNTS_LOCK:
            tally = {id(st): [st.allow, st.deny] for st in _STATS.values()}
            for counts in list(_LIVE):
                for st, allow, deny in counts.totals():
                    t = tally.setdefault(id(st), [st.allow, st.deny])
                    t[0] += allow
                    t[1] += deny
        for st in list(_STATS.values()):
            allow, deny = tally.get(id(st), (st.allow, st.deny))
            decisions.add_metric([st.stage, st.rule, "allow"], allow)
            decisions.add_metric([st.stage, st.rule, "deny"], deny)
            cum, acc = [], 0
            for le, n in zip([*map(repr, BUCKETS), "+Inf"], st.buckets):
                acc += n
                cum.append((le, acc))
            seconds.add_metric([st.stage, st.rule], cum, st.sum)
        yield decisions
        yield seconds

    def describe(self):  # noqa: ANN201
        return []


REGISTRY.register(_PolicyCollector())

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    rule: str
    reason: str = ""
    policy_version: str = ""
    stage: str = ""


ALLOW = Decision(True, "")


Check = Callable[[C], "str | None"]  # a compiled rule: a reason to deny, or None to allow


class Filter(Protocol[C]):
    name: str

    def decide(self, ctx: C, policy: Policy) -> Decision: ...


class Rule(Generic[C]):
    """A named rule, written once as a compiler: ``compile(policy)`` returns ``check(ctx) -> reason | None``
    with that policy's values bound (sets and numbers, not model lookups). A :class:`Chain` compiles each rule
    once per policy version and runs only the compiled checks. :meth:`simple` makes a rule from a predicate
    that reads the policy at each decision. ``functional`` marks a rule that is not a privacy control but a
    fact the stage depends on (``known_face``: is there a subject at all); it still runs under
    ``enforcement: off``. Its decisions name the rule; the chain stamps the policy version and stage.
    """

    __slots__ = ("name", "compile", "functional")

    def __init__(self, name: str, compile: Callable[[Policy], Check[C]], functional: bool = False) -> None:  # noqa: A002
        self.name, self.compile, self.functional = name, compile, functional

    @classmethod
    def simple(cls, name: str, check: Callable[[C, Policy], str | None], functional: bool = False) -> Rule[C]:
        """A rule with nothing to bind: ``check(ctx, policy)`` runs as is."""
        return cls(name, lambda p: lambda ctx: check(ctx, p), functional)

    def decide(self, ctx: C, policy: Policy) -> Decision:
        reason = self.compile(policy)(ctx)
        return Decision(reason is None, self.name, reason or "")


def _unit_check(unit: Filter[C], pol: Policy) -> Callable[[C], Decision]:
    """A unit that is not a :class:`Rule` (a nested chain): asked with the pinned policy, answers a Decision."""
    return lambda ctx: unit.decide(ctx, pol)


PolicySource = PolicyHolder | Policy | Callable[[], Policy]


def _policy_getter(src: PolicySource) -> Callable[[], Policy]:
    if isinstance(src, Policy):
        return lambda: src
    if isinstance(src, PolicyHolder):
        return lambda: src.current
    return src


class Chain(Generic[C]):
    """Run filter units in order against one pinned policy; the first deny wins.

    The rules are compiled once per policy version (:meth:`_pin`); every decision runs those compiled checks.
    Every decision of every unit is counted; its latency is timed on one decision in ``time_every``
    (default 16; 1 = every decision), so the histogram's ``_count`` is the number of timed decisions.
    Under a policy with ``enforcement: off`` (measurement only) only ``functional`` rules run; every
    other call returns an allow with rule ``enforcement_off``; nothing is counted or reported.
    """

    def __init__(
        self,
        stage: str,
        filters: Iterable[Filter[C]],
        policy: PolicySource | None = None,
        on_decision: Callable[[C, Decision], None] | None = None,
        time_every: int = 16,
    ) -> None:
        self.stage = stage
        self.name = stage
        self.filters = list(filters)
        self._policy = _policy_getter(policy if policy is not None else Policy())
        self._holder = policy if isinstance(policy, PolicyHolder) else None  # read .current without a call
        self.on_decision = on_decision
        self._names = [f.name for f in self.filters]
        self._stats = [rule_stats(stage, f.name) for f in self.filters]
        self._checks: list[Callable[[C], str | Decision | None]] = []
        self._counts = _Counts(self._stats)
        with _COUNTS_LOCK:
            _LIVE.add(self._counts)
        weakref.finalize(self, _fold, self._counts)
        self._pinned: Policy | None = None
        self._pinned_version = ""
        self._allow = ALLOW
        self._enforce = True
        self._bypass = ALLOW
        self._functional: list[tuple[str, Check[C]]] = []
        self._every = max(1, int(time_every))
        self._tick = self._every

    @property
    def policy(self) -> Policy:
        return self._policy()

    def _pin(self, pol: Policy) -> None:
        """Compile every rule for ``pol`` (reading pydantic models is slow: once per policy, not per decision)."""
        self._pinned, self._pinned_version = pol, pol.version
        self._allow = Decision(True, "", "", self._pinned_version, self.stage)
        self._enforce = pol.enforcement == "on"
        self._bypass = Decision(True, "enforcement_off", "policy enforcement is off (measurement only)", self._pinned_version, self.stage)
        self._checks = [f.compile(pol) if isinstance(f, Rule) else _unit_check(f, pol) for f in self.filters]
        self._functional = [(f.name, c) for f, c in zip(self.filters, self._checks) if isinstance(f, Rule) and f.functional]

    def decide(self, ctx: C, policy: Policy | None = None) -> Decision:
        if policy is not None:
            pol = policy
        elif self._holder is not None:
            pol = self._holder.current
        else:
            pol = self._policy()
        if pol is not self._pinned:
            self._pin(pol)
        if not self._enforce:  # measurement-only mode: pass-through, nothing counted or audited
            for name, functional in self._functional:
                why = functional(ctx)
                if why is not None:
                    return Decision(False, name, why, self._pinned_version, self.stage)
            return self._bypass
        self._tick -= 1
        if self._tick <= 0:
            self._tick = self._every
            return self._decide_timed(ctx)
        checks = self._checks
        for check in checks:
            reason = check(ctx)
            if reason is not None:
                i = checks.index(check)
                if isinstance(reason, Decision):  # a nested unit answered
                    if reason.allow:
                        continue
                    return self._deny(ctx, i, reason.rule or self._names[i], reason.reason)
                return self._deny(ctx, i, self._names[i], reason)
        return self._pass(ctx)

    def _decide_timed(self, ctx: C) -> Decision:
        """The same compiled checks, each timed (one decision in ``time_every``)."""
        perf = time.perf_counter
        for i, check in enumerate(self._checks):
            t0 = perf()
            reason = check(ctx)
            self._stats[i].observe(perf() - t0)
            if isinstance(reason, Decision):
                if reason.allow:
                    continue
                return self._deny(ctx, i, reason.rule or self._names[i], reason.reason)
            if reason is not None:
                return self._deny(ctx, i, self._names[i], reason)
        return self._pass(ctx)

    def _pass(self, ctx: C) -> Decision:
        self._counts.passed += 1
        if self.on_decision is not None:
            self.on_decision(ctx, self._allow)
        return self._allow

    def _deny(self, ctx: C, i: int, rule: str, reason: str) -> Decision:
        self._counts.deny[i] += 1
        result = Decision(False, rule, reason, self._pinned_version, self.stage)
        if self.on_decision is not None:
            self.on_decision(ctx, result)
        return result

    __call__ = decide


# --- edge: camera → broker ---------------------------------------------------------------------


@dataclass(slots=True)
class EdgeContext:
    zone: str
    quality: float
    box: tuple[int, int, int, int]
    image_bytes: int = 0


def _biometric_zones(p: Policy) -> frozenset[str]:
    return frozenset(z for z, r in p.zones.items() if r.biometric)


def _edge_biometric(p: Policy) -> Check[EdgeContext]:
    bio = _biometric_zones(p)
    return lambda ctx: None if ctx.zone in bio else f"zone {ctx.zone!r} is not biometric: counts only"


def _edge_no_images(p: Policy) -> Check[EdgeContext]:
    if p.edge.allow_image_bytes:
        return lambda ctx: None
    return lambda ctx: f"{ctx.image_bytes} image bytes may not leave the edge" if ctx.image_bytes else None


def _edge_quality(p: Policy) -> Check[EdgeContext]:
    mq, mpx = p.quality.min_quality, p.quality.min_face_px

    def check(ctx: EdgeContext) -> str | None:
        if not ctx.quality >= mq:  # also catches NaN
            return f"quality {ctx.quality:.2f} < {mq}"
        b = ctx.box
        if b[2] < mpx or b[3] < mpx:
            return f"face {min(b[2], b[3])}px < {mpx}px"
        return None

    return check


def edge_chain(policy: PolicySource | None = None, **kw) -> Chain[EdgeContext]:
    """Before a camera publishes a sighting. A deny on ``biometric_zone`` means: publish counts only."""
    return Chain(
        "edge",
        [
            Rule("biometric_zone", _edge_biometric),
            Rule("no_image_bytes", _edge_no_images),
            Rule("quality", _edge_quality),
        ],
        policy,
        **kw,
    )


# --- gate: broker → matcher --------------------------------------------------------------------


@dataclass(slots=True)
class GateContext:
    sighting: Sighting
    now: float


def _gate_biometric(p: Policy) -> Check[GateContext]:
    bio = _biometric_zones(p)
    return lambda ctx: None if ctx.sighting.zone in bio else f"zone {ctx.sighting.zone!r} is not a biometric zone"


def _gate_purpose(p: Policy) -> Check[GateContext]:
    ok = frozenset(z for z in p.zones if (pu := p.purpose_for_zone(z)) is not None and pu in p.purposes)
    return lambda ctx: None if ctx.sighting.zone in ok else f"no purpose defined for zone {ctx.sighting.zone!r}"


def _gate_fresh(p: Policy) -> Check[GateContext]:
    max_age, skew = p.max_event_age_s, p.max_clock_skew_s

    def check(ctx: GateContext) -> str | None:
        age = ctx.now - ctx.sighting.captured_at
        if not age <= max_age:  # NaN is stale too
            return f"stale by {age:.1f}s (max {max_age}s)"
        if age < -skew:
            return f"from {-age:.1f}s in the future (max skew {skew}s)"
        return None

    return check


def policy_from_legacy(biometric_zones: Iterable[str], zone_purpose: dict[str, str], max_age_s: float) -> Policy:
    """A policy equivalent to the old PolicySettings (biometric_zones, zone_purpose, max_event_age_s)."""
    bio = set(biometric_zones)
    zones = {z: ZoneRule(biometric=z in bio and z in zone_purpose, purpose=zone_purpose.get(z)) for z in bio | set(zone_purpose)}
    purposes = {p: PurposeRule() for p in set(zone_purpose.values())}
    return Policy(label="settings", zones=zones, purposes=purposes, max_event_age_s=max_age_s)


def gate_chain(
    biometric_zones: Iterable[str] | None = None,
    zone_purpose: dict[str, str] | None = None,
    max_age_s: float | None = None,
    *,
    policy: PolicySource | None = None,
    **kw,
) -> Chain[GateContext]:
    """Filters applied before a sighting may reach the matcher.

    Pass ``policy=`` (a :class:`PolicyHolder` for hot reload); the positional form builds a fixed policy
    from the old settings fields.
    """
    if policy is None:
        policy = policy_from_legacy(biometric_zones or (), zone_purpose or {}, max_age_s if max_age_s is not None else 30.0)
    return Chain(
        "gate",
        [
            Rule("biometric_zone", _gate_biometric),
            Rule("purpose", _gate_purpose),
            Rule("fresh", _gate_fresh),
        ],
        policy,
        **kw,
    )


# --- post-match: matcher → stores ---------------------------------------------------------------


@dataclass(slots=True)
class PostMatchContext:
    subject_id: str | None  # None: no gallery entry within threshold
    purpose: str
    zone: str
    at: float  # event (capture) time
    event_id: str | None = None  # for the audit trail


def post_match_chain(
    is_allowed: Callable[[str, str, str, float], bool], policy: PolicySource | None = None, **kw
) -> Chain[PostMatchContext]:
    """Between a search result and anything stored or published about a subject.

    A deny means: drop the embedding now and keep only the count (``known_face``: unknown face;
    ``consent``: a known face without active consent for this purpose, zone and time).
    """

    def known(ctx: PostMatchContext, p: Policy) -> str | None:
        return "no consented enrolee within threshold" if ctx.subject_id is None else None

    def consented(p: Policy) -> Check[PostMatchContext]:
        free = frozenset(name for name, r in p.purposes.items() if not r.requires_consent)

        def check(ctx: PostMatchContext) -> str | None:
            if ctx.purpose in free or is_allowed(ctx.subject_id, ctx.purpose, ctx.zone, ctx.at):  # type: ignore[arg-type]
                return None
            return f"no active consent for {ctx.purpose} in {ctx.zone}"

        return check

    return Chain("post_match", [Rule.simple("known_face", known, functional=True), Rule("consent", consented)], policy, **kw)


# --- store: anything written to a store -----------------------------------------------------------


@dataclass(slots=True)
class StoreContext:
    purpose: str
    captured_at: float
    now: float
    object_id: str = ""  # the record, for the audit trail


def _store_retention(ctx: StoreContext, p: Policy) -> str | None:
    ttl = p.retention_for(ctx.purpose)
    if not ctx.now - ctx.captured_at < ttl:
        return f"already past its {ttl:.0f}s retention for {ctx.purpose!r}"
    return None


def store_chain(policy: PolicySource | None = None, **kw) -> Chain[StoreContext]:
    return Chain("store", [Rule.simple("retention", _store_retention)], policy, **kw)


# --- export: stores → outside --------------------------------------------------------------------


@dataclass(slots=True)
class ExportContext:
    subject_id: str
    purpose: str  # what the export is for, e.g. "model-training"
    now: float
    object_id: str = ""  # what is exported (record id), for the audit trail
    actor: str = "export"


def export_chain(is_allowed: Callable[[str, str, str, float], bool], policy: PolicySource | None = None, **kw) -> Chain[ExportContext]:
    """Purpose binding: data leaves only for an exportable purpose the subject consented to (any zone)."""

    def export_purpose(ctx: ExportContext, p: Policy) -> str | None:
        if ctx.purpose not in p.exports.allowed_purposes:
            return f"purpose {ctx.purpose!r} is not exportable (allowed: {p.exports.allowed_purposes})"
        return None

    def purpose_binding(ctx: ExportContext, p: Policy) -> str | None:
        if p.exports.require_subject_consent and not is_allowed(ctx.subject_id, ctx.purpose, ANY_ZONE, ctx.now):
            return f"subject has no active consent for {ctx.purpose!r}"
        return None

    return Chain("export", [Rule.simple("export_purpose", export_purpose), Rule.simple("purpose_binding", purpose_binding)], policy, **kw)
