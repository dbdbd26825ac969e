"""1:1 verification for e-gate cameras: the live face against the claimed identity's templates.

The live embedding is compared with every stored view of the claimed subject; the smallest Euclidean
distance decides (accept if below the threshold). No 1:N search happens, so a gate never learns who else
the traveller might be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from matcher.index import GalleryIndex, IndexError_, as_batch

Outcome = Literal["accept", "reject", "unknown-subject"]


@dataclass(frozen=True, slots=True)
class Verification:
    subject_id: str
    outcome: Outcome
    distance: float | None  # Euclidean distance to the nearest view; None when the subject is not enrolled
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.outcome == "accept"


def verify_templates(live: np.ndarray, templates: np.ndarray, threshold: float, subject_id: str = "") -> Verification:
    """Decide one claim from raw templates ((v, d) array of the claimed subject's views)."""
    t = np.asarray(templates, dtype=np.float32)
    if t.ndim == 1:
        t = t.reshape(1, -1)
    if t.shape[0] == 0:
        return Verification(subject_id, "unknown-subject", None, threshold)
    x = as_batch(live, t.shape[1])
    if x.shape[0] != 1:
        raise IndexError_(f"verify takes one live embedding, got {x.shape[0]}")
    if not np.isfinite(t).all():
        raise IndexError_("templates contain non-finite values")
    d = float(np.sqrt(((t - x) ** 2).sum(axis=1).min()))
    return Verification(subject_id, "accept" if d < threshold else "reject", d, threshold)


class Verifier:
    """1:1 decisions against a :class:`GalleryIndex`'s stored views (exact for flat/ivf/hnsw)."""

    def __init__(self, index: GalleryIndex, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError("threshold must be > 0 (Euclidean distance)")
        self.index = index
        self.threshold = threshold

    def verify(self, subject_id: str, live: np.ndarray) -> Verification:
        if subject_id not in self.index:
            return Verification(subject_id, "unknown-subject", None, self.threshold)
        try:
            templates = self.index.views_of(subject_id)
        except IndexError_:  # erased between the check and the read
            return Verification(subject_id, "unknown-subject", None, self.threshold)
        return verify_templates(live, templates, self.threshold, subject_id)

    def verify_many(self, claims: list[tuple[str, np.ndarray]]) -> list[Verification]:
        """Several claims (e.g. a micro-batch from e-gate cameras); run it in a worker thread."""
        return [self.verify(sid, vec) for sid, vec in claims]
