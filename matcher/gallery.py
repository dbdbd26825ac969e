"""The gallery: templates of consented enrolees (several views per subject allowed), persisted as .npz.

Only subjects with a consent record may be enrolled (``enrol`` checks the registry). Search goes through
``matcher.index`` so the index type can follow the gallery size.

Templates at rest are sealed per subject when a :class:`policy.crypto.SubjectVault` is given to :meth:`save`:
each row is AES-GCM under its subject's key (bound to the subject id), so destroying that key at erasure makes
the subject's templates unreadable in every copy of the file, backups included. A sealed file keeps the
subject ids (for listing, removal and the audit scan) and opens only with the vault (:meth:`load`); rows whose
key is destroyed are dropped on opening. Without a vault the file is plaintext (CLI use outside a run).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import Settings
from core.files import write_private
from core.paths import gallery_path
from policy.consent import ConsentRegistry
from policy.stores import StoredItem

if TYPE_CHECKING:
    from policy.crypto import SubjectVault

log = logging.getLogger("paxsim.matcher.gallery")

DIM = 128


class EnrolmentRefused(ValueError):
    """Enrolment without any consent record is refused."""


class GallerySealed(ValueError):
    """The gallery's templates are sealed and no subject vault (key holder) was given to open them."""


def _aad(subject_id: str) -> bytes:
    return b"gallery-template|" + subject_id.encode()


@dataclass(slots=True)
class Gallery:
    subject_ids: list[str] = field(default_factory=list)  # one entry per view (row)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))
    # sealed rows as loaded without a vault (kept as they are by remove/save); None when the templates are open
    key_ids: list[str] | None = None
    blobs: np.ndarray | None = None  # (rows, nonce + ciphertext + tag) uint8
    dropped: int = 0  # rows skipped on opening because their subject key is destroyed (erased)

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def is_sealed(self) -> bool:
        """True when the templates are not readable in this object (loaded sealed without a vault)."""
        return self.blobs is not None

    def subjects(self) -> list[str]:
        return sorted(set(self.subject_ids))

    def enrol(self, subject_id: str, views: np.ndarray, consent: ConsentRegistry) -> None:
        if self.is_sealed:
            raise GallerySealed("the gallery is sealed: load it with the subject vault to enrol")
        if not consent.has_any(subject_id, time.time()):
            raise EnrolmentRefused(f"{subject_id}: no active consent (none given, expired or withdrawn); enrolment refused")
        views = np.atleast_2d(np.asarray(views, np.float32))
        if views.shape[1] != DIM or not np.isfinite(views).all():
            raise ValueError(f"{subject_id}: views must be finite float vectors of dimension {DIM}")
        self.subject_ids.extend([subject_id] * len(views))
        self.vectors = np.vstack([self.vectors, views])

    def remove(self, subject_id: str) -> int:
        keep = [i for i, s in enumerate(self.subject_ids) if s != subject_id]
        removed = len(self.subject_ids) - len(keep)
        self.subject_ids = [self.subject_ids[i] for i in keep]
        if self.is_sealed:
            self.key_ids = [self.key_ids[i] for i in keep]  # type: ignore[index]
            self.blobs = self.blobs[keep]  # type: ignore[index]
        else:
            self.vectors = self.vectors[keep] if keep else np.zeros((0, DIM), np.float32)
        return removed

    def save(self, path: Path, vault: SubjectVault | None = None) -> None:
        """Write atomically; sealed per subject with ``vault`` (or when loaded sealed), else plaintext."""
        buf = io.BytesIO()
        ids = np.array(self.subject_ids, dtype=object).astype(str)
        if vault is not None and not self.is_sealed:
            vault.warm(self.subjects(), True)
            sealed = [
                vault.seal(sid, np.ascontiguousarray(v, "<f4").tobytes(), _aad(sid)) for sid, v in zip(self.subject_ids, self.vectors)
            ]
            key_ids = [k for k, _b in sealed]
            blobs = np.array([np.frombuffer(b, np.uint8) for _k, b in sealed], np.uint8) if sealed else np.zeros((0, 0), np.uint8)
        else:
            key_ids, blobs = self.key_ids, self.blobs
        if key_ids is not None and blobs is not None:
            np.savez(buf, subject_ids=ids, key_ids=np.array(key_ids, dtype=object).astype(str), blobs=blobs)
        else:
            np.savez(buf, subject_ids=ids, vectors=self.vectors)
        # 0600, a temporary file per process, fsync, rename: replicas applying one erasure never share a file
        write_private(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, vault: SubjectVault | None = None) -> Gallery:
        """Read the file; a sealed one is opened with ``vault`` (rows of erased subjects dropped), or kept
        sealed without it (ids only: listing, removal, scans)."""
        with np.load(path, allow_pickle=False) as data:
            ids = list(map(str, data["subject_ids"]))
            if "blobs" not in data:
                return cls(ids, data["vectors"].astype(np.float32))
            key_ids, blobs = list(map(str, data["key_ids"])), np.asarray(data["blobs"], np.uint8)
        if vault is None:
            return cls(ids, np.zeros((0, DIM), np.float32), key_ids, blobs)
        return cls._open(ids, key_ids, blobs, vault)

    @classmethod
    def _open(cls, ids: list[str], key_ids: list[str], blobs: np.ndarray, vault: SubjectVault) -> Gallery:
        from policy.crypto import KeyExpired, SealError

        vault.warm(sorted(set(ids)), False)
        keep_ids, rows, dropped = [], [], 0
        for sid, kid, blob in zip(ids, key_ids, blobs):
            try:
                plain = vault.open(sid, kid, blob.tobytes(), _aad(sid))
            except KeyExpired:  # erased, or sealed by a key holder that has since restarted: the row is noise
                dropped += 1
                continue
            except SealError:  # altered on disk: fail closed for this row, keep the rest (counted by the vault)
                log.warning("gallery row does not authenticate: dropped", extra={"key_id": kid})
                dropped += 1
                continue
            keep_ids.append(sid)
            rows.append(np.frombuffer(plain, "<f4"))
        vectors = np.array(rows, np.float32).reshape(-1, DIM)
        return cls(keep_ids, vectors, dropped=dropped)

    @staticmethod
    def file_is_sealed(path: Path) -> bool:
        with np.load(path, allow_pickle=False) as data:
            return "blobs" in data


class GalleryStore:
    """The gallery file as the leak scanner reads it (``policy.scan.Store``): one item per template row."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, f"store:{path.name}"

    def items(self) -> Iterator[StoredItem]:
        if not self.path.exists():
            return
        g = Gallery.load(self.path)
        for i, sid in enumerate(g.subject_ids):
            yield StoredItem(f"{self.path}#row{i}", sid, None, None, stored_at=time.time())


def gallery_store(settings: Settings) -> GalleryStore:
    """Entry point ``paxsim.stores:gallery``: this run's gallery file."""
    return GalleryStore(gallery_path(settings))
