"""Embedding-space noise model for virtual mode, calibrated with the real embedder on rendered faces.

Measurement (``measure``): every bank identity is enrolled once from a frontal, evenly lit render
(``enrol_view``) and then rendered ``renders`` times with jitter (yaw ±25°, pitch ±10°, roll ±8°, random
light direction, colour and intensity, face width 70–140 px, blur, sensor noise, JPEG 35–95). Each render
goes through dlib HOG (upsample 1) → 5-point landmarks → ResNet; the Euclidean distance of its descriptor
to its own enrolment is a *same-identity* distance, to the other enrolments a *different-identity* one.

Model (``NoiseModel``): a virtual sighting of identity ``k`` is ``base_k + d · r`` where ``r`` is a uniformly
random unit direction in 128-D and ``d`` is drawn from the measured same-identity distance distribution
(stored as 101 quantiles, interpolated). The distance of a virtual sighting to its enrolment therefore has
exactly the measured distribution. Two virtual sightings of one identity are ≈ √2 × further apart from each
other than from the enrolment (their directions are independent), which is close to what the real embedder
shows for two jittered renders. ``sigma_per_dim`` = √(E[d²]/128) is the equivalent isotropic Gaussian
sigma (for ``scenario.embedding_noise`` in the config).

Calibrated numbers (bank of 50 optimised identities × 10 renders, seed 0; stored in
``scenario/data/calibration.json``, regenerate with ``python bench/faces.py --calibrate``):

- HOG detected (upsample 1 / 0): 97.2 % / 96.8 %; rank-1 against one frontal enrolment (1:50): 99.6 %
  (held-out jitter seed 1: 96.4 % / 96.0 %, rank-1 97.7 %, same-identity mean 0.277, threshold 0.392)
- same-identity distance: mean 0.275, p95 0.385 (median 0.27)
- different-identity distance: mean 0.548, p05 0.420
- threshold minimising the half total error: 0.393 (false match 2.1 %, false non-match 3.9 %);
  at dlib's usual 0.6, 74 % of different-identity pairs would match: synthetic faces are closer together
  than real people, so use the calibrated threshold on them
- equivalent isotropic sigma per dimension: 0.0251
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .faces import FaceModel, JitterSpec, Light, build, jittered_view, portrait, render_view
from .faces.jitter import scale_for_face_px
from .faces.params import Identity

DATA = Path(__file__).parent / "data"
CALIBRATION_FILE = DATA / "calibration.json"
DIM = 128
ENROL_FACE_PX = 120.0
ENROL_LIGHT = Light(direction=(0.0, -0.2, 1.0), ambient=0.45)


def enrol_view(model: FaceModel) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The frontal, evenly lit enrolment portrait of ``model`` (deterministic)."""
    per_px = scale_for_face_px(model, ENROL_FACE_PX)
    view = render_view(model, 0.0, 0.0, 0.0, ENROL_LIGHT, scale=per_px)
    return portrait(view, np.random.default_rng(model.identity.seed), pad=0.5)


def enrol(identities: Sequence[Identity], embedder=None) -> np.ndarray:
    """Base embeddings (N, 128) float32 from the enrolment portraits; NaN rows where nothing was detected."""
    from .faces.dlibface import default_embedder

    emb = embedder or default_embedder()
    out = np.full((len(identities), DIM), np.nan, np.float32)
    for i, ident in enumerate(identities):
        img, _ = enrol_view(build(ident))
        r = emb.detect_embed(img, 1)
        if r is not None:
            out[i] = r[1]
    return out


@dataclass
class Measurement:
    """Per render: identity index, detected (upsample 1 / 0), descriptor distance to every enrolment."""

    identity: np.ndarray  # (M,) int
    detected_up1: np.ndarray  # (M,) bool
    detected_up0: np.ndarray  # (M,) bool
    distances: np.ndarray  # (M, N) float32, NaN rows where not detected
    enrolled: np.ndarray  # (N,) bool: enrolment portrait detected
    params: list[dict] = field(default_factory=list)

    def same(self) -> np.ndarray:
        ok = self.detected_up1 & self.enrolled[self.identity]
        return self.distances[ok, self.identity[ok]]

    def different(self) -> np.ndarray:
        ok = self.detected_up1
        d = self.distances[ok].copy()
        d[np.arange(d.shape[0]), self.identity[ok]] = np.nan
        d[:, ~self.enrolled] = np.nan
        return d[np.isfinite(d)]

    def rank1(self) -> float:
        """Share of detected renders whose nearest enrolment is their own identity."""
        ok = self.detected_up1 & self.enrolled[self.identity]
        d = np.where(np.isfinite(self.distances[ok]), self.distances[ok], np.inf)
        return float(np.mean(np.argmin(d, axis=1) == self.identity[ok])) if ok.any() else 0.0

    def threshold(self) -> tuple[float, float, float]:
        """(threshold, false-match rate, false-non-match rate) minimising the half total error."""
        same, diff = np.sort(self.same()), np.sort(self.different())
        grid = np.linspace(0.2, 0.8, 601)
        fnmr = 1.0 - np.searchsorted(same, grid, side="left") / max(len(same), 1)
        fmr = np.searchsorted(diff, grid, side="left") / max(len(diff), 1)
        i = int(np.argmin(fnmr + fmr))
        return float(grid[i]), float(fmr[i]), float(fnmr[i])


def measure(
    identities: Sequence[Identity],
    renders: int = 10,
    seed: int = 0,
    spec: JitterSpec = JitterSpec(),
    base: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> Measurement:
    """Render, detect and embed ``renders`` jittered views of each identity (see module docstring)."""
    from .faces.dlibface import default_embedder

    emb = default_embedder()
    base = enrol(identities, emb) if base is None else base
    enrolled = np.all(np.isfinite(base), axis=1)
    ids, up1, up0, dists, params = [], [], [], [], []
    for k, ident in enumerate(identities):
        model = build(ident)
        per_px = scale_for_face_px(model, 40.0) / 40.0
        rng = np.random.default_rng([seed, ident.seed])
        for _ in range(renders):
            img, _box, p = jittered_view(model, rng, spec, unit_scale=per_px)
            boxes = emb.detect(img, 1)
            ids.append(k)
            up1.append(bool(boxes))
            up0.append(bool(emb.detect(img, 0)))
            row = np.full(len(identities), np.nan, np.float32)
            if boxes:
                e = emb.embed(img, boxes[0])
                row = np.linalg.norm(base - e[None, :], axis=1).astype(np.float32)
            dists.append(row)
            params.append(p)
        if progress:
            progress(k + 1)
    return Measurement(np.array(ids), np.array(up1), np.array(up0), np.array(dists), enrolled, params)


@dataclass(frozen=True)
class NoiseModel:
    """Same-identity distance distribution (101 quantiles) and the draw of a noisy embedding."""

    quantiles: tuple[float, ...]
    threshold: float = 0.5
    stats: dict = field(default_factory=dict)

    @property
    def sigma_per_dim(self) -> float:
        q = np.asarray(self.quantiles)
        return float(np.sqrt(np.mean(q**2) / DIM))

    def distance(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray | float:
        q = np.asarray(self.quantiles)
        return np.interp(rng.uniform(size=size), np.linspace(0, 1, len(q)), q)

    def sample(self, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A noisy float32 copy of ``base`` (shape (128,) or (n, 128)) at a measured same-identity distance."""
        base = np.asarray(base, dtype=np.float32)
        batch = base.reshape(-1, base.shape[-1])
        r = rng.standard_normal(batch.shape)
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        d = np.asarray(self.distance(rng, batch.shape[0]))[:, None]
        return (batch + d * r).astype(np.float32).reshape(base.shape)

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def from_measurement(cls, m: Measurement) -> NoiseModel:
        same, diff = m.same(), m.different()
        thr, fmr, fnmr = m.threshold()
        stats = {
            "identities": int(len(m.enrolled)),
            "renders": int(len(m.identity)),
            "hog_up1_detected": round(float(m.detected_up1.mean()), 4),
            "hog_up0_detected": round(float(m.detected_up0.mean()), 4),
            "rank1": round(m.rank1(), 4),
            "same_mean": round(float(same.mean()), 4),
            "same_p95": round(float(np.percentile(same, 95)), 4),
            "diff_mean": round(float(diff.mean()), 4),
            "diff_p05": round(float(np.percentile(diff, 5)), 4),
            "threshold": round(thr, 3),
            "fmr_at_threshold": round(fmr, 4),
            "fnmr_at_threshold": round(fnmr, 4),
        }
        q = tuple(round(float(x), 5) for x in np.quantile(same, np.linspace(0, 1, 101)))
        model = cls(quantiles=q, threshold=round(thr, 3), stats=stats)
        stats["sigma_per_dim"] = round(model.sigma_per_dim, 5)
        return model


def load_noise_model(path: Path = CALIBRATION_FILE) -> NoiseModel:
    """The calibrated model shipped in ``scenario/data/calibration.json``."""
    d = json.loads(Path(path).read_text())
    return NoiseModel(quantiles=tuple(d["quantiles"]), threshold=float(d["threshold"]), stats=d.get("stats", {}))


def noisy_embedding(base: np.ndarray, rng: np.random.Generator, model: NoiseModel | None = None) -> np.ndarray:
    """Virtual-mode sighting of an identity whose enrolment embedding is ``base``."""
    return (model or _default_model()).sample(base, rng)


_MODEL: NoiseModel | None = None


def _default_model() -> NoiseModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = load_noise_model()
    return _MODEL
