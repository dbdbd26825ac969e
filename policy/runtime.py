"""Everything a stage process needs from the policy package, wired once: ``PolicyRuntime.for_stage``.

    rt = PolicyRuntime.for_stage(settings, "matcher")      # in the service, after load_settings
    bg = asyncio.create_task(rt.background(stop))          # hot reload, key shredding, audit → audit topic
    chain = rt.post_match_chain()                          # audited (per batch), counted, timed
    ...
    s = rt.unseal(sighting)                                # KeyExpired → drop as expired, never dead-letter
    d = chain(PostMatchContext(best, purpose, s.zone, s.captured_at, s.event_id))
    ref = rt.reference(best) if d.allow else None          # what leaves the matcher (pseudonym)
    ...
    rt.flush_audit()                                       # once per batch, before committing offsets

Per micro-batch, not per event: the chains' decisions are collected as rows and :meth:`flush_audit`
writes **one** hash-chain entry per stage that commits to all of them (:meth:`AuditLog.append_batch`);
the consent registry is synced once per batch (``PRAGMA data_version``: a withdrawal committed before
a batch starts is seen by every decision of that batch) and answered from memory; pseudonyms are
memoised for the batch. :meth:`flush_audit` marks the batch boundary.

``enforcement: off`` in the policy file (measurement only, refused without ``PAXSIM_UNSAFE_NO_POLICY=1``)
makes every chain pass-through, :meth:`seal`/:meth:`reference` identity, and audits nothing but the fact
that enforcement is off. It exists so that ``bench/policy`` and the services can measure the controls'
cost with everything else equal.

Keys come from the run's key holder (``PAXSIM_KEYD_URL``/``PAXSIM_KEYD_TOKEN``, see ``policy.keyd``);
without one, ``ring``/``vault`` are None and a stage that must seal has to refuse to start (fail closed).
The policy file is ``$PAXSIM_POLICY`` or the packaged default; the consent registry and audit chains live
in ``settings.state_dir``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from broker.messages import Sighting
from core import faults
from policy.audit import AuditLog, DecisionRow
from policy.consent import ConsentRegistry, registry_path
from policy.crypto import (
    CONTROL_CLASS,
    MAX_FUTURE_EPOCHS,
    EpochKeyRing,
    HttpKeySource,
    KeyExpired,
    KeyHolderUnreachable,
    KeySource,
    KeyUnavailable,
    PublicKeyRing,
    SealError,
    SubjectVault,
    epoch_of,
    open_sighting,
    seal_sighting,
)
from policy.crypto.outputs import OutputKeys
from policy.filters import (
    Chain,
    Decision,
    edge_chain,
    export_chain,
    gate_chain,
    post_match_chain,
    store_chain,
)
from policy.policyfile import Policy, PolicyHolder

log = logging.getLogger("paxsim.policy.runtime")
_EPOCH = re.compile(r"[0-9]{1,20}")  # a key id's epoch: ASCII digits, at most 20 of them

CONSENT_SYNC_S = 1.0  # also re-sync consent at least this often when no batch boundary is marked
KEYD_START_WAIT_S = 60.0  # a stage starting while the run's key holder restarts waits this long for it


def run_key_source(require_keys: bool, enforcing: bool, wait_s: float | None = None) -> KeySource | None:
    """The run's key holder, once it answers with this process's credential. A key holder that is configured
    but not answering (restarting beside this stage) is waited for, up to ``wait_s``, never skipped: a stage
    started without its keys would dead-letter every sealed sighting. None only when the run has none."""
    try:
        keys = HttpKeySource.from_env()
    except KeyUnavailable as exc:  # no key holder configured (or no credential for it)
        if require_keys and enforcing:
            raise
        log.warning("no key holder: this stage can neither seal nor unseal", extra={"error": str(exc)})
        return None
    deadline = time.monotonic() + (KEYD_START_WAIT_S if wait_s is None else wait_s)
    delay = 0.2
    while True:
        try:
            keys.whoami()  # reachable, and the credential is valid (each role has only its own rights)
            return keys
        except KeyHolderUnreachable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("waiting for the key holder", extra={"error": str(exc), "retry_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class PolicyRuntime:
    def __init__(
        self,
        stage: str,
        state_dir: Path,
        holder: PolicyHolder,
        consent: ConsentRegistry,
        keys: KeySource | None,
        audit: AuditLog,
        settings: Any = None,
        sighting_keys: Literal["open", "seal", "none"] = "open",
    ) -> None:  # noqa: ANN401
        self.stage, self.state_dir, self.settings = stage, state_dir, settings
        self.holder, self.consent, self.keys, self.audit = holder, consent, keys, audit
        # sighting keys, fetched now so the first record needs no round trip: the matcher opens (the chain), the
        # edge seals (public keys only: it cannot open a sighting), the gate forwards sealed bytes (no key at all)
        self._ring: EpochKeyRing | None = EpochKeyRing(keys, "sightings") if keys is not None and sighting_keys == "open" else None
        self._sealer: PublicKeyRing | None = PublicKeyRing(keys, "sightings") if keys is not None and sighting_keys == "seal" else None
        # subject keys: raw for the stage that opens faces (the matcher: gallery templates, pseudonyms); pseudonym
        # keys for the others, which name subjects (erasure requests) and can open no template
        self.vault = SubjectVault(keys, pseudonyms_only=sighting_keys != "open") if keys is not None else None
        # the purpose rings that seal subject references on the output topics (the matcher's; policy.crypto.outputs)
        self.outputs: OutputKeys | None = (
            OutputKeys(keys, purposes=lambda: self.holder.current.purposes) if keys is not None and sighting_keys == "open" else None
        )
        self._control: EpochKeyRing | None = None
        self._rows: dict[str, list[DecisionRow]] = {}
        self._pseudonyms: dict[str, str] = {}
        self._consent_synced = -1e18
        self._enforcing: bool | None = None
        self._note_enforcement(holder.current)
        holder.on_change(lambda _old, new: self._note_enforcement(new))

    @classmethod
    def for_stage(
        cls,
        settings,
        stage: str,
        *,
        policy_path: str | Path | None = None,  # noqa: ANN001
        keys: KeySource | None = None,
        require_keys: bool = False,
        sighting_keys: Literal["open", "seal", "none"] = "open",
    ) -> PolicyRuntime:
        """Open the policy, consent registry, key source and the stage's audit chain.

        ``require_keys`` (the edge: it must seal) is waived under ``enforcement: off``.
        """
        state = Path(settings.state_dir)
        holder = PolicyHolder.from_settings_path(policy_path)
        if keys is None:
            keys = run_key_source(require_keys, holder.current.enforcement == "on")
        consent = ConsentRegistry.open(registry_path(state))
        return cls(stage, state, holder, consent, keys, AuditLog.in_state_dir(state, stage), settings=settings, sighting_keys=sighting_keys)

    # ------------------------------------------------------------------------------------ enforcement

    @property
    def enforcing(self) -> bool:
        """False under ``enforcement: off`` (measurement only)."""
        return self.holder.current.enforcement == "on"

    def _note_enforcement(self, pol: Policy) -> None:
        on = pol.enforcement == "on"
        if on == self._enforcing:
            return
        if not on or self._enforcing is not None:
            # the audit trail says when the controls were switched off (and on again)
            self.audit.append(
                "policy.enforcement", "on" if on else "off", rule="enforcement", object_id=self.stage, policy_version=pol.version
            )
        if not on:
            log.warning(
                "POLICY ENFORCEMENT IS OFF: measurement-only mode, no privacy controls", extra={"stage": self.stage, "policy": pol.version}
            )
        self._enforcing = on

    # ------------------------------------------------------------------------------------ chains

    def _rows_for(self, stage: str) -> list[DecisionRow]:
        rows = self._rows.get(stage)
        if rows is None:
            rows = self._rows[stage] = []
        return rows

    def _hook(self, subject: Callable[[Any], str | None] | None, obj: Callable[[Any], str | None]) -> Callable[[Any, Decision], None]:
        """Collect one audit row per decision (allows only if the policy audits them) for :meth:`flush_audit`."""
        holder, rows_for = self.holder, self._rows_for
        pinned: list = [None, True]  # (policy object, its audit.log_allows): read once per policy, not per decision

        def hook(ctx: Any, d: Decision) -> None:
            pol = holder.current
            if pol is not pinned[0]:
                pinned[0], pinned[1] = pol, pol.audit.log_allows
            if d.allow:
                if not pinned[1]:
                    return
                verdict = "allow"
            else:
                verdict = "deny"
            rows_for(d.stage).append((obj(ctx), d.stage, d.rule, verdict, d.policy_version, subject(ctx) if subject is not None else None))

        return hook

    def edge_chain(self) -> Chain:
        return edge_chain(self.holder)

    def gate_chain(self) -> Chain:
        return gate_chain(policy=self.holder, on_decision=self._hook(None, lambda c: c.sighting.event_id))

    def consent_allows(self, subject_id: str, purpose: str, zone: str, at: float) -> bool:
        """Consent from the in-memory snapshot, synced with SQLite once per batch (and every ``CONSENT_SYNC_S``)."""
        now = time.monotonic()
        if now - self._consent_synced >= CONSENT_SYNC_S:
            self.consent.sync()
            self._consent_synced = now
        return self.consent.allows(subject_id, purpose, zone, at)

    def reference(self, subject_id: str) -> str:
        """How a subject is named outside this stage: its pseudonym (memoised for the batch), or the id when
        the run has no key holder or enforcement is off."""
        ps = self._pseudonyms.get(subject_id)
        if ps is not None:
            return ps
        if self.vault is None or not self.enforcing:
            return subject_id
        ps = self._pseudonyms[subject_id] = self.vault.pseudonym(subject_id)
        return ps

    def post_match_chain(self, pseudonymise: bool = True) -> Chain:
        """The post-match chain, audited per batch. When the run seals subject references under purpose keys, the
        audit rows name no subject: kept for ``retention.audit_s``, a pseudonym there, joined by event id to the
        matches topic, would undo every purpose's shorter retention (the sealed match carries who it was)."""

        def subject(ctx: Any) -> str | None:
            if ctx.subject_id is None or (self.outputs is not None and self.enforcing and pseudonymise):
                return None
            if not (pseudonymise and self.vault is not None):
                return ctx.subject_id
            try:
                return self.reference(ctx.subject_id)
            except KeyExpired:  # erased while this batch was decided: nothing links the record to anybody
                return None

        return post_match_chain(self.consent_allows, self.holder, on_decision=self._hook(subject, lambda c: c.event_id))

    def store_chain(self) -> Chain:
        return store_chain(self.holder)

    def export_chain(self) -> Chain:
        """Every export decision is audited at once (not batched): refusals must never be lost."""
        return export_chain(
            self.consent.is_allowed,
            self.holder,
            on_decision=self.audit.decision_hook(
                "export", subject=lambda c: c.subject_id, obj=lambda c: c.object_id, log_allows=lambda: self.holder.current.audit.log_allows
            ),
        )

    def flush_audit(self) -> int:
        """End of a micro-batch: one audit entry per stage committing to the batch's decisions (one locked
        append), then the next batch re-syncs consent and pseudonyms. Call before committing offsets.
        Returns how many decisions were audited."""
        self._consent_synced = -1e18
        self._pseudonyms.clear()
        if not self._rows:
            return 0
        pending = dict(self._rows)  # the hooks hold self._rows itself: empty it in place
        self._rows.clear()
        n = 0
        for stage, rows in pending.items():
            self.audit.append_batch(f"{stage}.decisions", rows)
            n += len(rows)
        return n

    # ------------------------------------------------------------------------------------ keys

    @property
    def ring(self) -> EpochKeyRing | None:
        """The sightings key ring that opens (the matcher's); None without a key holder, in the gate and the edge."""
        return self._ring

    @property
    def sealed_run(self) -> bool:
        """True when the run has a key holder: every honest edge seals its embeddings."""
        return self.keys is not None

    def seal(self, s: Sighting) -> Sighting:
        if not self.enforcing:
            return s
        sealer = self._sealer or self._ring
        if sealer is None:
            raise KeyUnavailable("no key holder: refusing to publish an unsealed embedding")
        return seal_sighting(sealer, s)

    @property
    def control(self) -> EpochKeyRing | None:
        """The ring of control messages (erasure requests are sealed under it); None without a key holder."""
        if self._control is None and self.keys is not None:
            self._control = EpochKeyRing(self.keys, CONTROL_CLASS)
        return self._control

    def plaintext_refused(self, s: Sighting) -> str | None:
        """Why a sighting carrying a plaintext embedding must not go on, or None. With a key holder and enforcement
        on, every honest edge seals: plaintext is a hostile or broken producer, never a face to match."""
        if faults.disabled("gate.unsealed"):
            return None
        if s.embedding and self.sealed_run and self.enforcing:
            return "plaintext embedding refused: this run seals every embedding at the edge"
        if s.claimed_subject and self.sealed_run and self.enforcing:
            return "e-gate claim in clear refused: this run seals every claim with its embedding at the edge"
        return None

    def key_id_refused(self, s: Sighting, now: float) -> str | None:
        """Why a sealed sighting's key id cannot be honest, or None: an epoch more than the clock-skew allowance
        ahead of now (checked by arithmetic, no key derived), or a key id that is not ``class:chain:epoch``."""
        if not s.sealed or faults.disabled("key-id.epoch"):
            return None
        parts = s.key_id.split(":")
        # ASCII digits only: str.isdigit() also takes "²" or "٣", which int() then refuses (or reads as another number)
        if len(parts) != 3 or _EPOCH.fullmatch(parts[2]) is None:
            return f"malformed key id {s.key_id[:40]!r}"
        current = epoch_of(now, self.holder.current.retention.epoch_s)
        if int(parts[2]) > current + MAX_FUTURE_EPOCHS:
            return f"key id epoch {parts[2][:20]} is ahead of the current one ({current})"
        return None

    def unseal(self, s: Sighting) -> Sighting:
        if not s.sealed:
            refused = self.plaintext_refused(s)
            if refused:
                raise SealError(refused)
            return s
        if self.ring is None:
            raise KeyUnavailable("no key holder: cannot open sealed sightings")
        return open_sighting(self.ring, s)

    # ------------------------------------------------------------------------------------ background

    async def background(self, stop: asyncio.Event, reload_s: float = 1.0, mirror: bool = True) -> None:
        """Until ``stop`` (run as a task): hot-reload the policy, wipe expired keys and, when the runtime
        has broker settings, mirror the audit chains to the audit topic (:mod:`policy.mirror`, ~1 s)."""
        task = None
        if mirror and getattr(self.settings, "broker", None) is not None:
            task = asyncio.create_task(self._mirror(stop, reload_s))
        try:
            while not stop.is_set():
                self.holder.reload()
                if self._ring is not None:
                    self._ring.shred()
                try:
                    await asyncio.wait_for(stop.wait(), reload_s)
                except TimeoutError:
                    pass
            if task is not None:
                await task
        finally:
            if task is not None and not task.done():
                task.cancel()

    async def _mirror(self, stop: asyncio.Event, every_s: float) -> None:
        from broker.clients import start_producer
        from policy.audit import audit_dir
        from policy.mirror import mirror_dir

        while not stop.is_set():
            try:
                producer = await start_producer(self.settings)
                break
            except Exception as exc:  # no broker yet: the chain files are the record; try again
                log.warning("audit mirror: no broker", extra={"error": repr(exc)})
                try:
                    await asyncio.wait_for(stop.wait(), 5.0)
                except TimeoutError:
                    pass
        else:
            return
        try:
            await mirror_dir(audit_dir(self.state_dir), producer, stop, every_s, notary=self.keys, role=await self._role(stop))
        finally:
            await producer.stop()

    async def _role(self, stop: asyncio.Event) -> str:
        """The key-holder role of this stage's credential (which chains it may anchor); asked until it answers."""
        whoami = getattr(self.keys, "whoami", None)
        while whoami is not None and not stop.is_set():
            try:
                return str(await asyncio.to_thread(whoami))
            except Exception as exc:  # key holder restarting: the chain files are the record meanwhile
                log.warning("audit mirror: key holder did not say this credential's role", extra={"error": repr(exc)})
                try:
                    await asyncio.wait_for(stop.wait(), 2.0)
                except TimeoutError:
                    pass
        return "admin"  # an in-process key holder (tests, single-process tools) signs for every chain

    def close(self) -> None:
        self.flush_audit()
        self.audit.close()
        self.consent.close()
        for refresher in (self._ring, self._sealer, self.vault, self.outputs):  # background key-refresh threads
            if refresher is not None:
                refresher.close()
