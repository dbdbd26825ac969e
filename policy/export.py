"""Purpose-bound export: data leaves the system only for an exportable purpose its subject consented to.

:func:`export_tracks` reads the tracks topic from offset 0, resolves each subject reference (plain id or
pseudonym), asks the ``export`` chain (``export_purpose`` then ``purpose_binding``) per record, writes the
allowed ones as JSON lines and audits every decision (refusals always; allows too unless the policy's
``audit.log_allows`` is off). Exported lines carry the pseudonym, never the subject id, and no embedding.
Exports are written under ``<state_dir>/exports/`` (:func:`exports_dir`), where the leak scanner reads them
(:class:`ExportStore`, entry point ``paxsim.stores:exports``): an exported line stays personal data, bound to
its purpose's retention and its subject's consent, until its subject is erased.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from broker import topics as t
from broker.messages import MessageError, TrackUpdate, decode
from core.files import write_private
from policy.audit import AuditLog
from policy.consent import ConsentRegistry
from policy.crypto import SealError, SubjectVault
from policy.crypto.outputs import OutputKeys
from policy.filters import ExportContext, StoreContext, export_chain, store_chain
from policy.policyfile import Policy, load_policy
from policy.stores import StoredItem


def exports_dir(state_dir: Path | str) -> Path:
    """Where purpose-bound exports are written (and scanned)."""
    return Path(state_dir) / "exports"


@dataclass(frozen=True, slots=True)
class ExportResult:
    purpose: str
    exported: int
    refused: int
    unlinkable: int  # pseudonyms whose subject key is destroyed (erased): nothing to export
    path: Path


async def export_tracks(
    settings,
    policy: Policy,
    consent: ConsentRegistry,
    vault: SubjectVault | None,  # noqa: ANN001
    purpose: str,
    out: Path,
    audit: AuditLog,
    now: float | None = None,
) -> ExportResult:
    from broker.reader import read_all

    now = time.time() if now is None else now
    chain = export_chain(
        consent.is_allowed,
        policy,
        on_decision=audit.decision_hook(
            "export", subject=lambda c: c.subject_id, obj=lambda c: c.object_id, log_allows=policy.audit.log_allows
        ),
    )
    records = []
    outputs = OutputKeys(vault.source, background=False) if vault is not None else None
    sealed_gone = 0  # references past their purpose's retention: nobody to export
    try:
        for rec in await read_all(settings, t.TRACKS.name):
            try:
                tu: TrackUpdate = decode(rec.value or b"", TrackUpdate)
                if tu.sealed and outputs is not None:
                    tu, readable = outputs.open(tu)
                    if not readable:
                        sealed_gone += 1
                        continue
            except (MessageError, SealError):
                continue
            records.append(tu)
    finally:
        if outputs is not None:
            outputs.close()
    refs = {r.subject_id for r in records}
    ids = {r: r for r in refs if not r.startswith("ps-")}
    if vault is not None:
        ids.update(vault.resolve(refs - set(ids), consent.subjects()))
    # a record leaves no later than its own purpose allows: one already past that retention stays in (the `store`
    # rule, audited like the export rules), and every exported line keeps the shorter of the two purposes' TTLs
    keep = store_chain(policy, on_decision=audit.decision_hook("store", obj=lambda c: c.object_id, log_allows=policy.audit.log_allows))
    exported = refused = unlinkable = 0
    lines: list[str] = []
    for r in records:
        sid = ids.get(r.subject_id)
        if sid is None:
            unlinkable += 1
            continue
        source = policy.purpose_for_zone(r.zone) or purpose
        if not keep(StoreContext(source, r.captured_at, now, object_id=r.event_id)).allow:
            refused += 1
            continue
        d = chain(ExportContext(sid, purpose, now, object_id=r.event_id, actor="export"))
        if not d.allow:
            refused += 1
            continue
        ref = vault.pseudonym(sid) if vault is not None else r.subject_id
        row = {
            "subject": ref,
            "zone": r.zone,
            "prev_zone": r.prev_zone,
            "captured_at": r.captured_at,
            "camera_id": r.camera_id,
            "purpose": purpose,
            "source_purpose": source,
            "expires_at": r.captured_at + min(policy.retention_for(source), policy.retention_for(purpose)),
            "policy_version": d.policy_version,
        }
        lines.append(json.dumps(row) + "\n")
        exported += 1
    write_private(out, "".join(lines).encode())  # personal data: owner-only, like every store
    return ExportResult(purpose, exported, refused, unlinkable + sealed_gone, out)


class ExportStore:
    """Every exported line under :func:`exports_dir`, as the leak scanner reads it."""

    name = "store:exports"

    def __init__(
        self, directory: Path, purpose_for_zone: dict[str, str | None], retention_for: Callable[[str], float] | None = None
    ) -> None:
        self.directory, self.purpose_for_zone, self.retention_for = directory, purpose_for_zone, retention_for

    def items(self) -> Iterator[StoredItem]:
        for path in sorted(self.directory.glob("*.jsonl")):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for n, line in enumerate(lines, 1):
                try:
                    row = json.loads(line)
                    ref, at = str(row["subject"]), float(row["captured_at"])
                except (ValueError, KeyError, TypeError):
                    yield StoredItem(f"{path}:{n}", None, None, None, 0.0)  # counted as read; names nobody we can parse
                    continue
                zone = row.get("zone")
                purpose = row.get("purpose") or self.purpose_for_zone.get(zone or "")
                source = row.get("source_purpose") or self.purpose_for_zone.get(zone or "")
                # consent is that of the export's purpose; the retention no longer than the data's own purpose's
                ttl = self.retention_for(source) if self.retention_for is not None and source else None
                yield StoredItem(f"{path}:{n}", ref, purpose, zone, at, ttl_s=ttl)


def export_store(settings) -> ExportStore:  # noqa: ANN001
    """Entry point ``paxsim.stores:exports``."""
    policy = load_policy(settings.policy.file)
    return ExportStore(exports_dir(settings.state_dir), {z: policy.purpose_for_zone(z) for z in policy.zones}, policy.retention_for)
