"""Personal data at rest is owner-only, and what erasure clears is gone from the files, write-ahead log included."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import numpy as np

from core.paths import state_dir
from matcher.gallery import Gallery
from policy.consent import ConsentRecord, ConsentRegistry, registry_path


class S:
    def __init__(self, state_dir) -> None:  # noqa: ANN001
        self.state_dir = state_dir


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_state_dir_registry_and_gallery_are_owner_only(tmp_path: Path):
    os.umask(0o022)  # a usual login umask: files would be 0644 unless made otherwise
    state = state_dir(S(tmp_path / "state"))
    reg = ConsentRegistry.open(registry_path(state))
    reg.consent("pax-1", "boarding")
    g = Gallery(["pax-1"], np.ones((1, 128), np.float32))
    g.save(state / "gallery.npz")
    files = {p.name: _mode(p) for p in state.iterdir()}
    reg.close()
    assert _mode(state) == 0o700
    assert files["gallery.npz"] == 0o600 and files["consent.sqlite"] == 0o600, files
    assert all(m == 0o600 for n, m in files.items() if n.startswith("consent.sqlite")), files  # -wal and -shm too
    # an existing state dir made by an earlier version (0755) is tightened
    (tmp_path / "old").mkdir(mode=0o755)
    assert _mode(state_dir(S(tmp_path / "old"))) == 0o700


def test_a_published_erasure_leaves_no_pseudonym_in_the_registry_files(tmp_path: Path):
    reg = ConsentRegistry.open(registry_path(tmp_path))
    reg.consent("pax-1", "boarding")
    ps = "ps-0123456789abcdef01234567"
    req = reg.withdraw("pax-1", subject_ref=ps)
    assert req is not None
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("consent.sqlite*"))
    assert ps.encode() in blob  # queued: the outbox needs it until the topic has the sealed request
    reg.mark_published([req.request_id])
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("consent.sqlite*"))
    assert ps.encode() not in blob, "the erased subject's pseudonym survives in the registry's files (WAL?)"
    assert b"pax-1" in blob  # the withdrawal itself is kept, as proof, for the accountability period
    reg.close()


def _save_many(path: str, seed: int, n: int, start_at: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    while time.time() < start_at:  # both replicas start saving at the same moment
        time.sleep(0.001)
    for _ in range(n):
        Gallery([f"pax-{seed}"], rng.random((1, 128), np.float32)).save(Path(path))


def test_replicas_saving_one_gallery_at_once_never_tear_it(tmp_path: Path):
    """Two matcher replicas apply the same erasure and both save the gallery: each write is whole."""
    path = tmp_path / "gallery.npz"
    _save_many(str(path), 0, 1)
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    procs = [ctx.Process(target=_save_many, args=(str(path), seed, 300, start_at)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0], "a replica failed while the other saved the same gallery"
    g = Gallery.load(path)
    assert g.subject_ids in (["pax-1"], ["pax-2"]) and not list(tmp_path.glob("*.tmp*"))


def test_withdrawal_and_its_erasure_request_are_one_transaction(tmp_path: Path):
    """A crash (here: the outbox insert failing) between the withdrawal and its erasure request must leave
    neither: consent still active, nothing queued, and a retry withdraws and queues."""
    import sqlite3

    import pytest

    path = registry_path(tmp_path)
    reg = ConsentRegistry.open(path)
    reg.grant(ConsentRecord("pax-1", "boarding", 0.0, 4e9))
    db = sqlite3.connect(path)
    db.execute("CREATE TRIGGER fail BEFORE INSERT ON erasures BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.commit()
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        reg.withdraw("pax-1")
    again = ConsentRegistry.open(path)  # what another process (or a restart) sees
    assert again.get("pax-1", "boarding").withdrawn_at is None and again.pending_erasures() == []
    assert reg.get("pax-1", "boarding").withdrawn_at is None  # nor does this process believe otherwise
    db.execute("DROP TRIGGER fail")
    db.commit()
    req = reg.withdraw("pax-1")
    assert req is not None and [r.request_id for r in again.pending_erasures()] == [req.request_id]
    for r in (reg, again):
        r.close()
    db.close()


def test_no_key_error_names_the_erased_subject():
    """Key errors end up in logs (a lagging replica's key refresh logged ``KeyExpired('key of subject pax-…')``):
    none may name the subject, which is erased and must be in no store, logs included."""
    import pytest

    from policy.crypto import KeyExpired, KeyHolder, LocalKeySource, SealError, SubjectVault

    vault = SubjectVault(LocalKeySource(KeyHolder({})))
    kid, blob = vault.seal("pax-erased-7", b"template")
    with pytest.raises(SealError) as tampered:
        vault.open("pax-erased-7", kid, blob[:-1] + bytes([blob[-1] ^ 1]))
    assert vault.erase("pax-erased-7")
    errors = [tampered.value]
    for call in (
        lambda: vault.seal("pax-erased-7", b"x"),
        lambda: vault.open("pax-erased-7", kid, blob),
        lambda: vault.pseudonym("pax-erased-7"),
    ):
        with pytest.raises(KeyExpired) as exc:
            call()
        errors.append(exc.value)
    assert not [e for e in errors if "pax-erased-7" in f"{e!s} {e!r}"], errors


def test_consent_expiry_is_treated_like_withdrawal_for_the_stores(tmp_path: Path):
    """A subject whose every consent lapsed (none withdrawn) gets one erasure request, once, whoever sweeps."""
    reg = ConsentRegistry.open(registry_path(tmp_path))
    other = ConsentRegistry.open(registry_path(tmp_path))  # a second publisher (gate and dashboard both sweep)
    reg.grant_many(
        [
            ConsentRecord("pax-lapsed", "boarding", 0.0, 100.0),
            ConsentRecord("pax-lapsed", "flow-analytics", 0.0, 200.0),
            ConsentRecord("pax-half", "boarding", 0.0, 100.0),
            ConsentRecord("pax-half", "flow-analytics", 0.0, 1000.0),
            ConsentRecord("pax-withdrawn", "boarding", 0.0, 1000.0),
        ]
    )
    reg.withdraw("pax-withdrawn", at=50.0)
    assert reg.queue_lapsed(now=150.0) == []  # pax-lapsed still holds flow-analytics
    queued = reg.queue_lapsed(now=250.0)
    assert [(r.subject_id, r.reason) for r in queued] == [("pax-lapsed", "consent-expired")]
    assert other.queue_lapsed(now=300.0) == [] and reg.queue_lapsed(now=300.0) == []  # once
    pending = {r.subject_id for r in other.pending_erasures()}
    assert pending == {"pax-lapsed", "pax-withdrawn"}
    later = other.queue_lapsed(now=2000.0)
    assert [r.subject_id for r in later] == ["pax-half"]
    for r in (reg, other):
        r.close()
