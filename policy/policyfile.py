"""The policy file: one YAML document that says what may be processed, for which purpose, and for how long.

Loading validates it against :class:`Policy` and reports every problem with the file's line and column
(``policy.yaml:12:5: zones.egate.purpose: unknown purpose 'boardng'``). With no file, the packaged
``default-policy.yaml`` is used; any field a file leaves out takes its *strict* default (no zone is
biometric, consent is required, nothing is exportable, unknown faces are discarded, no image bytes).

Every loaded policy has a version string ``<label>@<sha256 of its canonical form, 12 hex>``: two files
that mean the same thing have the same version, and every decision records it.

:class:`PolicyHolder` keeps the current policy and swaps it atomically on reload; a file that fails to
validate is reported and the previous policy stays in force. :meth:`PolicyHolder.watch` polls the file
from asyncio.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from broker.topics import PolicyRetention

log = logging.getLogger("paxsim.policy")

DEFAULT_POLICY_PATH = Path(__file__).with_name("default-policy.yaml")
POLICY_ENV = "PAXSIM_POLICY"
UNSAFE_ENV = "PAXSIM_UNSAFE_NO_POLICY"  # "1": acknowledge that ``enforcement: off`` runs without privacy controls
_NAME = r"^[a-z][a-z0-9-]{0,62}$"

RELOADS = Counter("paxsim_policy_reloads_total", "Policy file reload attempts", ["result"])
LOADED = Gauge("paxsim_policy_loaded_info", "Policy version in force (value 1)", ["version"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZoneRule(_Strict):
    """What cameras in one zone may do."""

    biometric: bool = Field(default=False, description="faces from this zone may be matched; else counts only")
    purpose: str | None = Field(default=None, pattern=_NAME, description="the purpose its sightings serve")


class PurposeRule(_Strict):
    description: str = ""
    retention_s: float = Field(default=600.0, gt=0, le=365 * 86400, description="TTL of stored items for this purpose")
    requires_consent: bool = Field(default=True, description="matches for this purpose need the subject's consent")


class QualityGate(_Strict):
    min_quality: float = Field(default=0.5, ge=0.0, le=1.0)
    min_face_px: int = Field(default=40, ge=0, description="smaller face boxes (min of w, h) are dropped at the edge")


class Tracklets(_Strict):
    enabled: bool = Field(default=False, description="keep anonymous short-lived tracklets of unknown faces")
    ttl_s: float = Field(default=60.0, gt=0, le=3600)
    max_tracklets: int = Field(default=100_000, ge=1, description="oldest evicted beyond this many live tracklets")


class UnknownFaces(_Strict):
    action: Literal["discard"] = Field(default="discard", description="embedding dropped right after matching")
    tracklets: Tracklets = Field(default_factory=Tracklets)


class EdgeRule(_Strict):
    allow_image_bytes: bool = Field(default=False, description="may a sighting carry image bytes (never by default)")


class Retention(_Strict):
    sightings_s: float = Field(default=120.0, gt=0, le=86400, description="sealed sighting payloads on the broker")
    epoch_s: float = Field(default=10.0, gt=0, description="key epoch length; readable life is ≥ sightings_s - epoch_s")


class ExportRule(_Strict):
    allowed_purposes: list[str] = Field(default_factory=list, description="purposes data may be exported for")
    require_subject_consent: bool = Field(default=True, description="each exported subject consented to that purpose")


class AuditRule(_Strict):
    log_allows: bool = Field(default=True, description="audit allowed decisions too, not only refusals")


def _on_off(v: Any) -> Any:
    # YAML 1.1 reads a bare on/off as a boolean
    return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


Enforcement = Annotated[Literal["on", "off"], BeforeValidator(_on_off)]


def unsafe_acknowledged(environ: dict[str, str] | None = None) -> bool:
    """True if ``$PAXSIM_UNSAFE_NO_POLICY`` is ``1`` (what ``--unsafe-no-policy`` sets for the services)."""
    return (os.environ if environ is None else environ).get(UNSAFE_ENV, "") == "1"


class Policy(_Strict):
    """The whole policy. Field defaults are the strict ones."""

    enforcement: Enforcement = Field(
        default="on",
        description=(
            "off = MEASUREMENT ONLY: every chain is pass-through, nothing is sealed, pseudonymised or audited "
            f"per decision. Refused unless {UNSAFE_ENV}=1 (paxsim ... --unsafe-no-policy)"
        ),
    )

    label: str = Field(default="strict-default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    zones: dict[str, ZoneRule] = Field(default_factory=dict)
    purposes: dict[str, PurposeRule] = Field(default_factory=dict)
    max_event_age_s: float = Field(default=30.0, gt=0, le=3600, description="older sightings are stale")
    max_clock_skew_s: float = Field(default=5.0, ge=0, le=600, description="sightings from further in the future are invalid")
    quality: QualityGate = Field(default_factory=QualityGate)
    unknown_faces: UnknownFaces = Field(default_factory=UnknownFaces)
    edge: EdgeRule = Field(default_factory=EdgeRule)
    retention: Retention = Field(default_factory=Retention)
    exports: ExportRule = Field(default_factory=ExportRule)
    audit: AuditRule = Field(default_factory=AuditRule)

    _version: str = PrivateAttr(default="")
    _source: str = PrivateAttr(default="<defaults>")

    @property
    def version(self) -> str:
        if not self._version:
            self._version = f"{self.label}@{content_hash(self)}"
        return self._version

    @property
    def source(self) -> str:
        return self._source

    def zone(self, zone: str) -> ZoneRule | None:
        return self.zones.get(zone)

    def topic_retention(self) -> PolicyRetention:
        """retention.ms of the biometric topics on a Kafka that honours it (the catalogue's ``policy:`` topics)."""
        longest = max((p.retention_s for p in self.purposes.values()), default=self.retention.sightings_s)
        return PolicyRetention(sightings_s=self.retention.sightings_s, purposes_s=longest)

    def purpose_for_zone(self, zone: str) -> str | None:
        rule = self.zones.get(zone)
        return rule.purpose if rule is not None and rule.biometric else None

    def retention_for(self, purpose: str) -> float:
        """TTL (s) of stored items for ``purpose``; an unknown purpose gets the shortest TTL in the policy."""
        rule = self.purposes.get(purpose)
        if rule is not None:
            return rule.retention_s
        return min([p.retention_s for p in self.purposes.values()] + [self.retention.sightings_s])


def content_hash(policy: Policy) -> str:
    """sha256 of the policy's canonical JSON (sorted keys, defaults filled), first 12 hex digits."""
    # enforcement "on" is left out so that versions of enforcing policies are what they were before the switch
    data = policy.model_dump(mode="json", exclude={"enforcement"} if policy.enforcement == "on" else None)
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    source: str
    line: int  # 1-based; 0 when unknown
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}" if self.line else self.source
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


class PolicyError(Exception):
    """The policy file is invalid; ``issues`` lists every problem with its line."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("invalid policy:\n" + "\n".join(f"  {i}" for i in issues))


# ---------------------------------------------------------------------------------------------- line mapping


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[yaml.Node | None, bool]:
    """The deepest node on ``loc`` and whether the whole path was found (else: the parent of what's missing)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node = value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node, False
    return node, True


def _key_node(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The key node of the last element of ``loc`` (for 'extra field' errors, point at the key itself)."""
    parent, found = _node_at(root, loc[:-1])
    if found and isinstance(parent, yaml.MappingNode):
        for key, _value in parent.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(loc[-1]):
                return key
    return None


def _issue(source: str, root: yaml.Node | None, loc: tuple[Any, ...], msg: str, key: bool = False) -> PolicyIssue:
    node = _key_node(root, loc) if key and loc else None
    if node is None:
        node, _found = _node_at(root, loc)
    line = node.start_mark.line + 1 if node is not None else 0
    col = node.start_mark.column + 1 if node is not None else 0
    return PolicyIssue(source, line, col, ".".join(str(p) for p in loc), msg)


def _duplicate_keys(source: str, node: yaml.Node | None, path: tuple[Any, ...] = ()) -> list[PolicyIssue]:
    """PyYAML keeps the last of duplicated keys silently; a policy must not."""
    issues: list[PolicyIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if name in seen:
                issues.append(
                    PolicyIssue(
                        source,
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        ".".join(map(str, path + (name,))),
                        f"duplicate key (first defined on line {seen[name]})",
                    )
                )
            else:
                seen[name] = key.start_mark.line + 1
            issues += _duplicate_keys(source, value, path + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            issues += _duplicate_keys(source, item, path + (i,))
    return issues


def _semantic_issues(source: str, root: yaml.Node | None, p: Policy) -> list[PolicyIssue]:
    """Cross-references a schema cannot express."""
    out: list[PolicyIssue] = []
    known = sorted(p.purposes)
    for name in p.purposes:
        if not re.match(_NAME, name):
            out.append(_issue(source, root, ("purposes", name), f"purpose name must match {_NAME}", key=True))
    for zname, z in p.zones.items():
        if not re.match(_NAME, zname):
            out.append(_issue(source, root, ("zones", zname), f"zone name must match {_NAME}", key=True))
        if z.biometric and z.purpose is None:
            out.append(_issue(source, root, ("zones", zname), "a biometric zone needs a purpose"))
        if z.purpose is not None and z.purpose not in p.purposes:
            out.append(_issue(source, root, ("zones", zname, "purpose"), f"unknown purpose {z.purpose!r} (known: {known})"))
    for i, purpose in enumerate(p.exports.allowed_purposes):
        if purpose not in p.purposes:
            out.append(_issue(source, root, ("exports", "allowed_purposes", i), f"unknown purpose {purpose!r} (known: {known})"))
    if p.retention.epoch_s >= p.retention.sightings_s:
        out.append(
            _issue(source, root, ("retention", "epoch_s"), f"must be shorter than retention.sightings_s ({p.retention.sightings_s})")
        )
    return out


def parse_policy(text: str, source: str = "<string>", unsafe_no_policy: bool | None = None) -> Policy:
    """Validate YAML ``text`` as a policy; raise :class:`PolicyError` listing every problem with its line.

    A policy with ``enforcement: off`` is refused unless ``unsafe_no_policy`` (default: read from
    ``$PAXSIM_UNSAFE_NO_POLICY``): it switches every privacy control off, for overhead measurements only.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        raise PolicyError([PolicyIssue(source, line, col, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([_issue(source, root, (), "the top level must be a mapping")])
    issues = _duplicate_keys(source, root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            issues.append(_issue(source, root, loc, err["msg"], key=err["type"] == "extra_forbidden"))
        raise PolicyError(issues) from None
    issues += _semantic_issues(source, root, policy)
    if policy.enforcement == "off" and not (unsafe_acknowledged() if unsafe_no_policy is None else unsafe_no_policy):
        issues.append(
            _issue(
                source,
                root,
                ("enforcement",),
                "'off' disables every privacy control (measurement only); "
                f"refused without the acknowledgement {UNSAFE_ENV}=1 / --unsafe-no-policy",
            )
        )
    if issues:
        raise PolicyError(issues)
    policy._source = source
    return policy


def load_policy(path: str | Path | None = None) -> Policy:
    """Load ``path``, else ``$PAXSIM_POLICY``, else the packaged strict default policy."""
    path = path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError([PolicyIssue(str(p), 0, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_policy(text, str(p))


# ---------------------------------------------------------------------------------------------- hot reload


class PolicyHolder:
    """The policy in force. Readers take ``holder.current`` once per decision; reload swaps it atomically.

    A reload that fails validation keeps the previous policy and stores the error in ``last_error``.
    """

    def __init__(self, path: str | Path | None = None, policy: Policy | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._stamp: tuple[int, int, int] | None = None
        self._digest = ""
        self.last_error: PolicyError | None = None
        self._listeners: list[Callable[[Policy, Policy], None]] = []
        if policy is not None:
            self.current = policy
        else:
            self.current = load_policy(self.path)
            if self.path is not None:
                self._stamp = self._stat()
                self._digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        LOADED.labels(self.current.version).set(1)

    @classmethod
    def from_settings_path(cls, path: str | Path | None) -> PolicyHolder:
        path = path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH
        return cls(path)

    @property
    def version(self) -> str:
        return self.current.version

    def on_change(self, callback: Callable[[Policy, Policy], None]) -> None:
        """Call ``callback(old, new)`` after each successful reload that changed the version."""
        self._listeners.append(callback)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self, force: bool = False) -> bool:
        """Re-read the file if it changed (mtime, size, inode, then content hash). True if the policy changed."""
        if self.path is None:
            return False
        stamp = self._stat()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.last_error = PolicyError([PolicyIssue(str(self.path), 0, 0, "", f"cannot read: {exc}")])
            RELOADS.labels("error").inc()
            log.error("policy reload failed; previous policy stays in force", extra={"error": str(self.last_error)})
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest and not force:
            return False
        try:
            new = parse_policy(raw.decode("utf-8", errors="replace"), str(self.path))
        except PolicyError as exc:
            self._digest = digest
            self.last_error = exc
            RELOADS.labels("error").inc()
            log.error("policy reload failed; previous policy stays in force", extra={"error": str(exc)})
            return False
        self._digest = digest
        self.last_error = None
        old = self.current
        if new.version == old.version:
            RELOADS.labels("unchanged").inc()
            return False
        self.current = new
        RELOADS.labels("ok").inc()
        LOADED.labels(old.version).set(0)
        LOADED.labels(new.version).set(1)
        log.info("policy reloaded", extra={"old_version": old.version, "new_version": new.version})
        for cb in self._listeners:
            cb(old, new)
        return True

    async def watch(self, interval_s: float = 1.0, stop: asyncio.Event | None = None) -> None:
        """Poll the file every ``interval_s`` until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            self.reload()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass
