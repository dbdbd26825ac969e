"""What every run (``demo``, ``up``, each ``load`` step) starts before its stages, and stops after them: the
key holder, the broker (embedded Tansu, or an external Kafka whose topics are ensured), the enrolment and the
stage processes' environment.

    async with start_infra(settings, console.print) as infra:
        infra.enrol(duration_s)
        stack = infra.stack(run_dir)
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from broker.admin import ensure_topics
from broker.embedded import EmbeddedBroker
from core.config import Settings
from core.paths import gallery_path, state_dir
from core.stack import Stack
from matcher.gallery import Gallery
from policy.audit import record_grants
from policy.consent import ConsentRecord, ConsentRegistry, consent_path
from policy.crypto import HttpKeySource, SubjectVault
from policy.keyd import KeydProcess, spawn_keyd
from policy.policyfile import DEFAULT_POLICY_PATH, POLICY_ENV, load_policy
from scenario.virtual import VirtualAirport

CONSENT_VALIDITY_S = 86400.0


def enrol_scenario(
    settings: Settings,
    duration_s: float,
    embeddings: dict[str, np.ndarray] | None = None,
    withheld: Collection[str] = (),
    vault: SubjectVault | None = None,
) -> tuple[int, int]:
    """Write the gallery and consent registry for the scenario's enrolled travellers. Returns (subjects, purposes granted).

    ``embeddings`` replaces the enrolment of the travellers it names: one vector, or ``(k, 128)`` views enrolled
    as k gallery rows (video runs: the real embedder's descriptors of their portraits at several poses, where
    the virtual model has synthetic vectors; the matcher scores a subject by its closest view).
    ``withheld`` travellers are neither enrolled nor consented: strangers whose faces the matcher must call unknown.
    Runs again over an existing registry: a withdrawn consent stays withdrawn and its subject is not enrolled.
    With ``vault`` (the run's key holder) every template is sealed under its subject's key."""
    airport = VirtualAirport(settings.scenario, duration_s)
    ids, vecs, purposes = airport.enrolment()
    keep = [i for i, sid in enumerate(ids) if sid not in set(withheld)]
    ids, vecs = [ids[i] for i in keep], vecs[keep]
    now = time.time()
    consent = ConsentRegistry.open(consent_path(settings))
    try:
        grants = [ConsentRecord(sid, p, granted_at=now - 60, expires_at=now + CONSENT_VALIDITY_S) for sid in ids for p in purposes[sid]]
        written = consent.grant_many(grants, keep_withdrawn=True)
        granted = record_grants(state_dir(settings), written, "demo-enrolment")  # every grant in the consent chain
        gallery = Gallery()
        enrolled = [(sid, v) for sid, v in zip(ids, vecs) if consent.has_any(sid, now)]
        for sid, v in enrolled:
            gallery.enrol(sid, embeddings[sid] if embeddings and sid in embeddings else v, consent)
    finally:
        consent.close()
    gallery.save(gallery_path(settings), vault)
    return len(enrolled), granted


def policy_file(settings: Settings) -> Path:
    """The policy file in force: ``policy.file``, else ``$PAXSIM_POLICY``, else the packaged default (absolute)."""
    return Path(settings.policy.file or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH).resolve()


def child_env(settings: Settings, bootstrap: str, embedded: bool, keys: KeydProcess | None = None) -> dict[str, str]:
    """Environment for stage processes: the effective configuration, written once into the state dir, and the
    address and token of the run's key holder (in the environment only: never in argv or on disk).

    Children load exactly the settings the parent validated (including ``--cameras`` style overrides),
    pointed at the broker the parent started."""
    effective = settings.model_copy(
        update={
            "state_dir": Path(settings.state_dir).resolve(),
            "policy": settings.policy.model_copy(update={"file": policy_file(settings)}),
            "broker": settings.broker.model_copy(
                update={"bootstrap": bootstrap, "profile": "embedded" if embedded else settings.broker.profile}
            ),
        }
    )
    path = state_dir(effective) / "effective-config.yaml"
    path.write_text(yaml.safe_dump(effective.model_dump(mode="json"), sort_keys=False))
    return {"PAXSIM_CONFIG": str(path), **(keys.env if keys else {})}


@dataclass
class Infra:
    settings: Settings
    keys: KeydProcess
    bootstrap: str
    broker: EmbeddedBroker | None

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    @property
    def client_settings(self) -> Settings:
        """The run's settings pointed at the broker it started (for readers, scans and accounting)."""
        update: dict[str, object] = {"bootstrap": self.bootstrap}
        if self.embedded:
            update["profile"] = "embedded"
        return self.settings.model_copy(update={"broker": self.settings.broker.model_copy(update=update)})

    def key_source(self) -> HttpKeySource:
        return HttpKeySource(self.keys.url, self.keys.token)

    def enrol(self, duration_s: float, embeddings: dict[str, np.ndarray] | None = None) -> tuple[int, int]:
        """The scenario's consenting travellers into the gallery (templates sealed per subject) and the consent
        registry; returns (subjects, purpose grants)."""
        return enrol_scenario(self.settings, duration_s, embeddings, vault=SubjectVault(self.key_source()))

    def stack(self, run_dir: Path, extra_env: dict[str, str] | None = None) -> Stack:
        """The stage processes' supervisor: each stage gets the effective configuration, the broker's address
        and its own key-holder credential."""
        env = {**child_env(self.settings, self.bootstrap, self.embedded, self.keys), **(extra_env or {})}
        return Stack(run_dir, env, stage_env=self.keys.stage_env())


@contextlib.asynccontextmanager
async def start_infra(settings: Settings, say: Callable[[str], object], keyd_state: Path | None = None) -> AsyncIterator[Infra]:
    """Key holder (its sealed state in ``keyd_state``, so that a restart keeps keys and tombstones), then the
    broker; both are stopped on the way out whatever happens (Ctrl-C included)."""
    keys = spawn_keyd(policy_file(settings), state=keyd_state)
    broker = EmbeddedBroker(settings) if settings.broker.embedded else None
    supervisor: asyncio.Task[None] | None = None
    try:
        if broker is not None:
            await broker.start()
            bootstrap = broker.bootstrap
            supervisor = asyncio.create_task(broker.supervise())
            say(f"[bold]embedded broker[/] (Tansu) on {bootstrap}; topics created")
        else:
            bootstrap = settings.broker.bootstrap or ""
            created = await ensure_topics(settings, bootstrap, load_policy(policy_file(settings)).topic_retention())
            say(f"[bold]Kafka[/] at {bootstrap}; created {len(created)} missing topic(s)")
        yield Infra(settings, keys, bootstrap, broker)
    finally:
        if supervisor is not None:
            supervisor.cancel()
        if broker is not None:
            await broker.stop()
        keys.stop()
