"""Everything a stage process needs from the policy package, wired once: ``PolicyRuntime.for_stage``.

    rt = PolicyRuntime.for_stage(settings, "matcher")      # in the service, after load_settings
    bg = asyncio.create_task(rt.background(stop))          # policy hot reload + key shredding
    chain = rt.post_match_chain()                          # audited (batched), counted, timed
    ...
    s = rt.unseal(sighting)                                # KeyExpired → drop as expired, never dead-letter
    d = chain(PostMatchContext(best, purpose, s.zone, s.captured_at))
    ref = rt.vault.pseudonym(best) if d.allow else None    # what leaves the matcher
    ...
    rt.flush_audit()                                       # once per batch, before committing offsets

Keys come from the run's key holder (``PAXSIM_KEYD_URL``/``PAXSIM_KEYD_TOKEN``, see ``policy.keyd``);
without one, ``ring``/``vault`` are None and a stage that must seal has to refuse to start (fail closed).
The policy file is ``$PAXSIM_POLICY`` or the packaged default; the consent registry and audit chains live
in ``settings.state_dir``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from broker.messages import Sighting
from policy.audit import AuditLog
from policy.consent import ConsentRegistry, registry_path
from policy.crypto import EpochKeyRing, HttpKeySource, KeySource, KeyUnavailable, SubjectVault, open_sighting, seal_sighting
from policy.filters import (
    Chain, Decision, edge_chain, export_chain, gate_chain, post_match_chain, store_chain,
)
from policy.policyfile import PolicyHolder

log = logging.getLogger("paxsim.policy.runtime")


class PolicyRuntime:
    def __init__(self, stage: str, state_dir: Path, holder: PolicyHolder, consent: ConsentRegistry,
                 keys: KeySource | None, audit: AuditLog) -> None:
        self.stage, self.state_dir = stage, state_dir
        self.holder, self.consent, self.keys, self.audit = holder, consent, keys, audit
        self.ring = EpochKeyRing(keys, "sightings") if keys is not None else None
        self.vault = SubjectVault(keys) if keys is not None else None
        self._pending: list[dict[str, Any]] = []

    @classmethod
    def for_stage(cls, settings, stage: str, *, policy_path: str | Path | None = None,  # noqa: ANN001
                  keys: KeySource | None = None, require_keys: bool = False) -> "PolicyRuntime":
        """Open the policy, consent registry, key source and the stage's audit chain."""
        state = Path(settings.state_dir)
        holder = PolicyHolder.from_settings_path(policy_path)
        if keys is None:
            try:
                keys = HttpKeySource.from_env()
                keys.chain("sightings")
            except KeyUnavailable as exc:
                if require_keys:
                    raise
                log.warning("no key holder: this stage can neither seal nor unseal", extra={"error": str(exc)})
                keys = None
        consent = ConsentRegistry.open(registry_path(state))
        return cls(stage, state, holder, consent, keys, AuditLog.in_state_dir(state, stage))

    # ------------------------------------------------------------------------------------ chains

    def _hook(self, subject: Callable[[Any], str | None], obj: Callable[[Any], str | None]) -> Callable[[Any, Decision], None]:
        def hook(ctx: Any, d: Decision) -> None:
            if not d.allow or self.holder.current.audit.log_allows:
                self._pending.append({"action": f"{d.stage}.decision", "decision": "allow" if d.allow else "deny",
                                      "rule": d.rule, "subject_id": subject(ctx), "object_id": obj(ctx),
                                      "policy_version": d.policy_version})

        return hook

    def edge_chain(self) -> Chain:
        return edge_chain(self.holder)

    def gate_chain(self) -> Chain:
        return gate_chain(policy=self.holder, on_decision=self._hook(lambda c: None, lambda c: c.sighting.event_id))

    def post_match_chain(self, pseudonymise: bool = True) -> Chain:
        def subject(ctx: Any) -> str | None:
            if ctx.subject_id is None:
                return None
            return self.vault.pseudonym(ctx.subject_id) if pseudonymise and self.vault is not None else ctx.subject_id

        return post_match_chain(self.consent.is_allowed, self.holder, on_decision=self._hook(subject, lambda c: None))

    def store_chain(self) -> Chain:
        return store_chain(self.holder)

    def export_chain(self) -> Chain:
        """Every export decision is audited at once (not batched): refusals must never be lost."""
        return export_chain(self.consent.is_allowed, self.holder, on_decision=self.audit.decision_hook(
            "export", subject=lambda c: c.subject_id, obj=lambda c: c.object_id,
            log_allows=lambda: self.holder.current.audit.log_allows))

    def flush_audit(self) -> int:
        """Write the batch's decision records in one locked append. Call before committing offsets."""
        pending, self._pending = self._pending, []
        self.audit.append_many(pending)
        return len(pending)

    # ------------------------------------------------------------------------------------ keys

    def seal(self, s: Sighting) -> Sighting:
        if self.ring is None:
            raise KeyUnavailable("no key holder: refusing to publish an unsealed embedding")
        return seal_sighting(self.ring, s)

    def unseal(self, s: Sighting) -> Sighting:
        if not s.sealed:
            return s
        if self.ring is None:
            raise KeyUnavailable("no key holder: cannot open sealed sightings")
        return open_sighting(self.ring, s)

    # ------------------------------------------------------------------------------------ background

    async def background(self, stop: asyncio.Event, reload_s: float = 1.0) -> None:
        """Hot-reload the policy and wipe expired keys until ``stop`` (run as a task)."""
        while not stop.is_set():
            self.holder.reload()
            if self.ring is not None:
                self.ring.shred()
            try:
                await asyncio.wait_for(stop.wait(), reload_s)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        self.flush_audit()
        self.audit.close()
        self.consent.close()
