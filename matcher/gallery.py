"""The gallery: templates of consented enrolees (several views per subject allowed), persisted as .npz.

Only subjects with a consent record may be enrolled (``enrol`` checks the registry). Search goes through
``matcher.index`` so the index type can follow the gallery size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policy.consent import ConsentRegistry

DIM = 128


class EnrolmentRefused(ValueError):
    """Enrolment without any consent record is refused."""


@dataclass(slots=True)
class Gallery:
    subject_ids: list[str] = field(default_factory=list)  # one entry per view (row)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))

    def __len__(self) -> int:
        return len(self.subject_ids)

    def subjects(self) -> list[str]:
        return sorted(set(self.subject_ids))

    def enrol(self, subject_id: str, views: np.ndarray, consent: ConsentRegistry) -> None:
        if subject_id not in consent.records:
            raise EnrolmentRefused(f"{subject_id}: no consent record; enrolment refused")
        views = np.atleast_2d(np.asarray(views, np.float32))
        if views.shape[1] != DIM or not np.isfinite(views).all():
            raise ValueError(f"{subject_id}: views must be finite float vectors of dimension {DIM}")
        self.subject_ids.extend([subject_id] * len(views))
        self.vectors = np.vstack([self.vectors, views])

    def remove(self, subject_id: str) -> int:
        keep = [i for i, s in enumerate(self.subject_ids) if s != subject_id]
        removed = len(self.subject_ids) - len(keep)
        self.subject_ids = [self.subject_ids[i] for i in keep]
        self.vectors = self.vectors[keep] if keep else np.zeros((0, DIM), np.float32)
        return removed

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, subject_ids=np.array(self.subject_ids, dtype=object).astype(str), vectors=self.vectors)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Gallery":
        with np.load(path, allow_pickle=False) as data:
            return cls(list(map(str, data["subject_ids"])), data["vectors"].astype(np.float32))
