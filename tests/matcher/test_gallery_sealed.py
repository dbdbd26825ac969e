"""Gallery templates sealed per subject at rest: erasure (key destroyed) makes them unreadable, backups included."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from matcher.gallery import Gallery, GallerySealed
from matcher.service import load_gallery
from policy.consent import ConsentRecord, ConsentRegistry
from policy.crypto import KeyHolder, LocalKeySource, SubjectVault


@pytest.fixture
def vault():
    return SubjectVault(LocalKeySource(KeyHolder({"sightings": (10.0, 120.0)})))


def _gallery(pop) -> Gallery:
    ids, vecs, _ = pop(3, views=2, seed=5)
    consent = ConsentRegistry()
    for sid in set(ids):
        consent.grant(ConsentRecord(sid, "boarding", granted_at=0.0, expires_at=1e12))
    g = Gallery()
    for sid in sorted(set(ids)):
        g.enrol(sid, vecs[[i for i, s in enumerate(ids) if s == sid]], consent)
    return g


def test_sealed_file_holds_no_template_and_opens_with_the_vault(tmp_path, pop, vault):
    g = _gallery(pop)
    plain, sealed = tmp_path / "plain.npz", tmp_path / "gallery.npz"
    g.save(plain)
    g.save(sealed, vault)
    row = g.vectors[0].astype("<f4").tobytes()
    assert row in plain.read_bytes()  # the control: a plaintext file does contain the template bytes
    assert row not in sealed.read_bytes() and Gallery.file_is_sealed(sealed)
    opened = Gallery.load(sealed, vault)
    assert opened.subject_ids == g.subject_ids and np.array_equal(opened.vectors, g.vectors)


def test_erasure_makes_the_subjects_templates_unreadable_even_in_a_backup(tmp_path, pop, vault):
    g = _gallery(pop)
    path, backup = tmp_path / "gallery.npz", tmp_path / "backup.npz"
    g.save(path, vault)
    shutil.copy(path, backup)
    gone = g.subjects()[0]
    # what the matcher's erasure does: drop the rows without opening anybody's template, then destroy the key
    live = Gallery.load(path)
    assert live.is_sealed and live.remove(gone) == 2
    live.save(path)
    vault.erase(gone)
    for f in (path, backup):
        opened = Gallery.load(f, vault)
        assert gone not in opened.subjects() and len(opened) == 4
        np.testing.assert_array_equal(opened.vectors, g.vectors[2:])
    assert Gallery.load(backup, vault).dropped == 2


def test_sealed_gallery_without_keys_lists_but_never_opens(tmp_path, pop, vault):
    g = _gallery(pop)
    path = tmp_path / "gallery.npz"
    g.save(path)
    assert not Gallery.file_is_sealed(path)
    load_gallery(path, vault)  # the matcher seals a plaintext gallery on first load
    assert Gallery.file_is_sealed(path)
    listed = Gallery.load(path)
    assert listed.subjects() == g.subjects() and listed.vectors.shape == (0, 128)
    with pytest.raises(GallerySealed):
        listed.enrol("sub-new", np.zeros(128, np.float32), ConsentRegistry())
    with pytest.raises(GallerySealed, match="key holder"):
        load_gallery(path, None)  # the matcher fails closed


def _failures(reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("paxsim_crypto_open_failures_total", {"reason": reason}) or 0.0


def test_a_restarted_key_holder_reads_no_old_row_and_an_altered_row_drops_alone(tmp_path, pop, vault):
    g = _gallery(pop)
    path = tmp_path / "gallery.npz"
    g.save(path, vault)
    # the key holder restarted: its keys died with it; the new one numbers its subject keys afresh
    fresh = SubjectVault(LocalKeySource(KeyHolder({"sightings": (10.0, 120.0)})))
    fresh.warm(g.subjects(), True)  # it even has new keys for the same subjects (re-enrolment under way)
    tampered = _failures("tampered")
    opened = Gallery.load(path, fresh)
    assert len(opened) == 0 and opened.dropped == len(g)
    assert _failures("tampered") == tampered  # known as keys that are gone, not mistaken for a tampered file
    # one row altered on disk: that row is dropped, the others still open
    with np.load(path, allow_pickle=False) as data:
        parts = {k: data[k].copy() for k in data.files}
    parts["blobs"][1][-1] ^= 1
    np.savez(path, **parts)
    opened = Gallery.load(path, vault)
    assert len(opened) == len(g) - 1 and opened.dropped == 1
