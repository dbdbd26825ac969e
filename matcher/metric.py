"""A learned comparison space for face templates: within-class covariance normalisation (WCCN).

The embedder's Euclidean space treats every direction alike, but much of what moves one person's templates
apart (pose, light, blur, compression) lies along a few shared directions, and a crowded population sits
closer together than a view sits to its own enrolment. WCCN (Hatch et al., 2006; the usual first step of
PLDA back-ends) estimates the within-person covariance ``W`` on a labelled *background* set of people who are
never the ones to be identified, and compares templates as ``x' = (x − μ) · W^{-1/2}``, shrunk towards the
identity (``shrinkage``) so that directions the background barely saw are not blown up, then scaled to unit
length. Distances, the threshold and the margin are then in that space: a metric file carries the rule it
was calibrated with (``threshold``, ``margin``) on background people held out from the fit.

Files are ``.npz`` without pickles, validated on load (``MetricError`` says what is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.config import MatcherSettings

FORMAT = 1


class MetricError(ValueError):
    """A metric file or its fitting data is unusable; the message says why."""


@dataclass(frozen=True)
class LearnedMetric:
    mean: np.ndarray  # (d,) float32: the background's mean template
    transform: np.ndarray  # (d, d) float32: W^{-1/2}, shrunk
    threshold: float  # Euclidean, in the learned space
    margin: float
    shrinkage: float
    background: str  # what it was fitted and calibrated on, for reports

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) templates → (n, d) float32 unit rows in the learned space."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise MetricError(f"templates of shape {x.shape}; this metric takes (n, {self.dim})")
        y = (x - self.mean) @ self.transform
        n = np.linalg.norm(y, axis=1, keepdims=True)
        return (y / np.maximum(n, 1e-12)).astype(np.float32)

    def with_rule(self, threshold: float, margin: float) -> LearnedMetric:
        return replace(self, threshold=float(threshold), margin=float(margin))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(
                f,
                format=np.int32(FORMAT),
                mean=self.mean.astype(np.float32),
                transform=self.transform.astype(np.float32),
                rule=np.array([self.threshold, self.margin, self.shrinkage], dtype=np.float64),
                background=np.array(self.background),
            )

    @classmethod
    def load(cls, path: Path) -> LearnedMetric:
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt, mean, transform, rule, background = (z[k] for k in ("format", "mean", "transform", "rule", "background"))
        except FileNotFoundError:
            raise MetricError(f"metric file not found: {path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise MetricError(f"{path}: not a metric file ({exc})") from None
        if int(fmt) != FORMAT:
            raise MetricError(f"{path}: metric format {int(fmt)}; this version reads {FORMAT}")
        d = mean.shape[0] if mean.ndim == 1 else -1
        if d < 1 or transform.shape != (d, d) or rule.shape != (3,):
            raise MetricError(f"{path}: mean {mean.shape}, transform {transform.shape}, rule {rule.shape} do not fit together")
        if not (np.isfinite(mean).all() and np.isfinite(transform).all() and np.isfinite(rule).all()):
            raise MetricError(f"{path}: non-finite values")
        threshold, margin, shrinkage = (float(v) for v in rule)
        if not (0 < threshold <= 2 and 0 <= margin < 2):
            raise MetricError(f"{path}: threshold {threshold} / margin {margin} outside a unit-vector space's range")
        return cls(mean.astype(np.float32), transform.astype(np.float32), threshold, margin, shrinkage, str(background))


def comparison(settings: MatcherSettings) -> tuple[LearnedMetric | None, float, float]:
    """How the matcher compares, from its settings: (learned metric or None, threshold, margin); with a metric
    file, its own calibrated rule. Raises ``MetricError`` for a bad file."""
    if settings.metric_file is None:
        return None, settings.threshold, settings.margin
    metric = LearnedMetric.load(settings.metric_file)
    return metric, metric.threshold, metric.margin


def fit_wccn(vectors: np.ndarray, labels: Sequence[int] | np.ndarray, shrinkage: float = 0.3, background: str = "") -> LearnedMetric:
    """WCCN from ``vectors`` (n, d) of labelled people (at least two templates each for most of them).

    ``shrinkage`` adds that share of the mean within-person variance to every direction before inverting
    (0: plain WCCN, large: back towards the raw space). The rule (threshold, margin) is left unset (nan):
    calibrate it on held-out people and set it with :meth:`LearnedMetric.with_rule`."""
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise MetricError(f"{x.shape} templates for {len(y)} labels")
    if not np.isfinite(x).all():
        raise MetricError("non-finite templates")
    if shrinkage <= 0:
        raise MetricError("shrinkage must be > 0 (the within-person covariance of a finite background is singular)")
    d = x.shape[1]
    scatter = np.zeros((d, d))
    used = 0
    for k in np.unique(y):
        xk = x[y == k]
        if len(xk) < 2:
            continue
        c = xk - xk.mean(axis=0)
        scatter += c.T @ c
        used += len(xk)
    if used < d // 4:
        raise MetricError(f"{used} templates of people seen at least twice: too few to estimate a {d}-D within-person covariance")
    w, v = np.linalg.eigh(scatter / used)
    w = np.maximum(w, 0.0)
    transform = v / np.sqrt(w + shrinkage * w.mean())
    nan = float("nan")
    return LearnedMetric(x.mean(axis=0).astype(np.float32), transform.astype(np.float32), nan, nan, float(shrinkage), background)
