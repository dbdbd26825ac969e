"""What the API works on: the stream view, the scraper, tokens, the consent registry, the gallery and the audit log.

One :class:`Services` per app. Every read or change of identity data through the API is appended to the
``dashboard-api`` audit chain (``<state_dir>/audit/dashboard-api.jsonl``) with the token holder as actor,
and queued for the audit topic. Erasure requests (from the API or queued by ``paxsim consent withdraw``)
are published to the erasure topic from the consent registry's outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from broker import topics as t
from broker.clients import BrokerUnreachable, start_producer
from broker.messages import AuditRecord, ErasureRequest, encode
from core.config import Settings
from core.paths import gallery_path
from dashboard import metrics as M
from dashboard.auth import FailedAuth, Principal, TokenStore
from dashboard.feed import StreamView, follow
from dashboard.scrape import Scraper
from matcher.gallery import Gallery
from policy.audit import AuditLog
from policy.consent import ConsentRecord, ConsentRegistry, consent_path
from policy.crypto import CONTROL_CLASS, EpochKeyRing, HttpKeySource, KeyUnavailable, SubjectVault
from policy.crypto.outputs import OutputKeys
from policy.erasure import reference, send_erasures
from policy.policyfile import Policy, PolicyError, load_policy

log = logging.getLogger("paxsim.dashboard")

AUDIT_CHAIN = "dashboard-api"
TOKENS_FILE_ENV = "PAXSIM_DASHBOARD_TOKENS_FILE"
RETRY_S = 3.0


def tokens_path(settings: Settings) -> Path:
    env = os.environ.get(TOKENS_FILE_ENV)
    return Path(env) if env else Path(settings.state_dir) / "dashboard" / "tokens.json"


def open_registry(settings: Settings) -> ConsentRegistry:
    """The run's SQLite consent registry (shared with the matcher, which sees withdrawals at once)."""
    return ConsentRegistry.open(consent_path(settings), refresh_s=0.5)


@dataclass
class Services:
    settings: Settings
    view: StreamView
    scraper: Scraper
    tokens: TokenStore
    _registry: ConsentRegistry | None
    policy: Policy
    policy_error: str = ""
    producer: object | None = None
    audit_out: deque[AuditRecord] = field(default_factory=lambda: deque(maxlen=100_000))
    _audit: dict[str, AuditLog] = field(default_factory=dict)
    _gallery_lock: threading.Lock = field(default_factory=threading.Lock)
    _control: EpochKeyRing | None = None
    _vault: SubjectVault | None = None
    _keys: HttpKeySource | None = None
    failed_auth: FailedAuth = field(default_factory=FailedAuth)

    @classmethod
    def create(cls, settings: Settings, environ: dict[str, str] | None = None) -> Services:
        try:
            policy, err = load_policy(settings.policy.file), ""
        except PolicyError as exc:
            policy, err = Policy(), str(exc)
        zone_purpose = {z: r.purpose for z, r in policy.zones.items() if r.biometric and r.purpose}
        ttl = {p: r.retention_s for p, r in policy.purposes.items()}
        view = StreamView(zone_purpose=zone_purpose, ttl=ttl, default_ttl_s=max(ttl.values(), default=policy.retention.sightings_s))
        services = cls(
            settings=settings,
            view=view,
            scraper=Scraper(Path(settings.state_dir), environ),
            tokens=TokenStore.from_env(tokens_path(settings), environ),
            _registry=open_registry(settings),
            policy=policy,
            policy_error=err,
        )
        _ = services.control  # the feed opens sealed erasure requests from the first record on
        return services

    @property
    def vault(self) -> SubjectVault | None:
        """Subject keys of the run (to attach pseudonyms to erasures); None when the run has no key holder.
        Made once: each vault keeps its own key cache and refresh thread."""
        if self._vault is None:
            if self.keys is None:
                return None
            self._vault = SubjectVault(self.keys, pseudonyms_only=True)  # names subjects; opens no template
        return self._vault

    @property
    def keys(self) -> HttpKeySource | None:
        """The run's key holder (its audit checkpoints); None when the run has none."""
        if self._keys is None:
            try:
                self._keys = HttpKeySource.from_env()
            except KeyUnavailable:
                return None
        return self._keys

    @property
    def control(self) -> EpochKeyRing | None:
        """The control key class's ring (erasure requests are sealed under it); None without a key holder."""
        if self._control is None:
            if self.keys is None:
                return None
            self._control = EpochKeyRing(self.keys, CONTROL_CLASS)
            self.view.control = self._control
            self.view.outputs = OutputKeys(self.keys, purposes=lambda: self.policy.purposes)
        return self._control

    @property
    def registry(self) -> ConsentRegistry:
        """The consent registry, (re)opened on use: an app may be started and shut down more than once."""
        if self._registry is None:
            self._registry = open_registry(self.settings)
        return self._registry

    @property
    def biometric_zones(self) -> set[str]:
        return {z for z, r in self.policy.zones.items() if r.biometric}

    # ------------------------------------------------------------------------------------ audit

    def audit(
        self,
        who: Principal | None,
        action: str,
        decision: str,
        *,
        subject_id: str | None = None,
        object_id: str | None = None,
        rule: str = "",
    ) -> AuditRecord:
        actor = f"api:{who.name}" if who else "api:anonymous"
        logger = self._audit.get(actor)
        if logger is None:
            logger = self._audit[actor] = AuditLog.in_state_dir(
                self.settings.state_dir, AUDIT_CHAIN, actor=actor, publish=self.audit_out.append
            )
        return logger.append(
            action,
            decision,
            rule=rule or (who.role.value if who else ""),
            subject_id=subject_id,
            object_id=object_id,
            policy_version=self.policy.version,
        )

    # ------------------------------------------------------------------------------------ gallery

    def gallery(self) -> Gallery:
        p = gallery_path(self.settings)
        return Gallery.load(p) if p.exists() else Gallery()

    def gallery_remove(self, subject_id: str) -> int:
        with self._gallery_lock:
            p = gallery_path(self.settings)
            if not p.exists():
                return 0
            g = Gallery.load(p)
            n = g.remove(subject_id)
            if n:
                g.save(p)
            return n

    # ------------------------------------------------------------------------------------ erasure

    def erase(self, subject_id: str, reason: str) -> tuple[ErasureRequest, int, int]:
        """Withdraw every consent of the subject (queues the erasure), drop its templates and stored points.

        Returns (request, gallery templates removed, dashboard points removed)."""
        # trajectories are stored under the pseudonym when the run has keys: name it while the key still lives,
        # and keep it with the queued request (the key may be destroyed before the request is published)
        try:
            ref = reference(subject_id, self.vault)
        except KeyUnavailable:
            ref = ""  # the publisher attaches it once the key holder answers
        req = self.registry.withdraw(subject_id, subject_ref=ref)
        if req is None:  # nothing active to withdraw: still an erasure of whatever is stored, queued durably
            req = self.registry.queue_erasure(subject_id, reason, subject_ref=ref)
        templates = self.gallery_remove(subject_id)
        stat = self.view.erase(req, time.time())
        return req, templates, stat.points_removed

    async def publish_outbox(self) -> int:
        """Publish queued erasure requests and audit records; returns how many erasures went out."""
        if self.producer is None:
            return 0
        sent = 0
        pending = self.registry.pending_erasures()
        if pending:
            await send_erasures(self.producer, pending, self.vault, self.control)
            self.registry.mark_published([r.request_id for r in pending])
            M.ERASURES_PUBLISHED.inc(len(pending))
            sent = len(pending)
        if self.audit_out:
            batch = [self.audit_out.popleft() for _ in range(len(self.audit_out))]
            futs = [await self.producer.send(t.AUDIT.name, encode(r), key=r.actor.encode()) for r in batch]  # type: ignore[attr-defined]
            await asyncio.gather(*futs)
        return sent

    # ------------------------------------------------------------------------------------ background

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topics, scrape the stages and publish the outbox until ``stop``; survive a missing broker."""
        tasks = [
            asyncio.create_task(self._follow(stop)),
            asyncio.create_task(self.scraper.run(stop)),
            asyncio.create_task(self._outbox(stop)),
            asyncio.create_task(self._housekeeping(stop)),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if self.producer is not None:
                await self.producer.stop()  # type: ignore[attr-defined]
                self.producer = None

    async def _follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await follow(self.settings, self.view, stop)
            except BrokerUnreachable as exc:
                log.warning("stream follower: broker unreachable; retrying", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001 - the API must outlive a stream failure
                log.exception("stream follower failed; retrying")
            await _sleep(stop, RETRY_S)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Enforce the retention of stored points every second, viewers or not; export scrape health."""
        while not stop.is_set():
            self.view.expire()
            for name, ts in list(self.scraper.targets.items()):
                M.SCRAPE_UP.labels(name).set(1 if ts.up else 0)
            await _sleep(stop, 1.0)

    async def _outbox(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.producer is None and self.settings.broker.bootstrap:
                    self.producer = await start_producer(self.settings)
                await self.publish_outbox()
            except BrokerUnreachable as exc:
                log.warning("erasure outbox: broker unreachable; retrying", extra={"error": str(exc)})
            except KeyUnavailable as exc:  # requests wait for their pseudonym (policy.erasure.for_the_topic)
                log.warning("erasure outbox: key holder unavailable; retrying", extra={"error": str(exc)})
            except Exception:  # noqa: BLE001
                log.exception("erasure outbox failed; retrying")
            await _sleep(stop, 1.0)

    def close(self) -> None:
        """Close files; anything used afterwards is reopened."""
        for a in self._audit.values():
            a.close()
        self._audit.clear()
        if self._registry is not None:
            self._registry.close()
            self._registry = None


async def _sleep(stop: asyncio.Event, s: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), s)
    except TimeoutError:
        pass


def consent_row(r: ConsentRecord, now: float) -> dict:
    return r.as_row(now)
