"""The learned metric (WCCN): fitted on background people, it separates a crowded population whose views vary
along shared nuisance directions; files round-trip and bad ones fail with a clear message; the matcher
compares in its space with its calibrated rule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.config import Settings
from core.paths import gallery_path
from matcher.gallery import Gallery
from matcher.metric import LearnedMetric, MetricError, fit_wccn
from matcher.service import Matcher, MatcherState
from matcher.trajectory import ZoneMap
from policy.consent import ConsentRecord, ConsentRegistry
from policy.runtime import PolicyRuntime

DIM = 128
NUISANCE = np.random.default_rng(99).normal(0.0, 1.0, (6, DIM))  # pose/light-like directions shared by everybody


def crowd(people: int, views: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frontal templates, view templates, view labels): people 0.3 apart, views moved mostly along NUISANCE."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 0.3 / np.sqrt(2 * DIM), (people, DIM))
    labels = np.repeat(np.arange(people), views)
    moves = rng.normal(0.0, 0.06, (people * views, len(NUISANCE))) @ NUISANCE + rng.normal(0.0, 0.004, (people * views, DIM))
    return centres.astype(np.float32), (centres[labels] + moves).astype(np.float32), labels


def rank1(gallery: np.ndarray, probes: np.ndarray, labels: np.ndarray) -> float:
    d = np.linalg.norm(probes[:, None] - gallery[None], axis=2)
    return float((d.argmin(axis=1) == labels).mean())


def background_metric(shrinkage: float = 0.3) -> LearnedMetric:
    centres, views, labels = crowd(80, 5, seed=1)  # people never identified below
    return fit_wccn(np.vstack([centres, views]), np.concatenate([np.arange(80), labels]), shrinkage, "test crowd")


def test_wccn_fitted_on_other_people_separates_a_crowd_the_raw_space_confuses():
    gallery, probes, labels = crowd(60, 5, seed=2)
    metric = background_metric()
    raw, learned = rank1(gallery, probes, labels), rank1(metric.apply(gallery), metric.apply(probes), labels)
    assert raw < 0.5, raw  # the control: the nuisance swamps who is who
    assert learned > 0.95, learned
    assert np.allclose(np.linalg.norm(metric.apply(probes), axis=1), 1.0, atol=1e-5)


def test_heavy_shrinkage_falls_back_towards_the_raw_space():
    gallery, probes, labels = crowd(60, 5, seed=2)
    assert rank1(*(background_metric(1e4).apply(x) for x in (gallery, probes)), labels) < 0.6


def test_file_round_trip_and_clear_errors(tmp_path):
    m = background_metric().with_rule(0.9, 0.04)
    path = tmp_path / "metric.npz"
    m.save(path)
    back = LearnedMetric.load(path)
    assert (back.threshold, back.margin, back.background) == (0.9, 0.04, "test crowd")
    assert np.array_equal(back.transform, m.transform) and np.array_equal(back.mean, m.mean)
    with pytest.raises(MetricError, match="not found"):
        LearnedMetric.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MetricError, match="not a metric file"):
        LearnedMetric.load(tmp_path / "junk.npz")
    m.with_rule(float("nan"), 0.0).save(tmp_path / "unset.npz")  # fitted, never calibrated
    with pytest.raises(MetricError, match="non-finite"):
        LearnedMetric.load(tmp_path / "unset.npz")
    m.with_rule(2.5, 0.0).save(tmp_path / "wide.npz")
    with pytest.raises(MetricError, match="outside"):
        LearnedMetric.load(tmp_path / "wide.npz")
    with pytest.raises(MetricError, match="takes"):
        m.apply(np.zeros((2, 64), np.float32))
    with pytest.raises(MetricError, match="too few"):
        fit_wccn(np.zeros((4, DIM)), [0, 0, 1, 1])
    with pytest.raises(MetricError, match="non-finite"):
        fit_wccn(np.full((40, DIM), np.nan), np.repeat(np.arange(20), 2))


def _matcher(tmp_path, gallery: np.ndarray, metric_file=None) -> Matcher:  # noqa: ANN001
    settings = Settings(state_dir=tmp_path, matcher={"metric_file": metric_file})
    consent, g = ConsentRegistry(), Gallery()
    for k, v in enumerate(gallery):
        consent.grant(ConsentRecord(f"p{k}", "boarding", granted_at=0.0, expires_at=1e12))
        g.enrol(f"p{k}", v, consent)
    g.save(gallery_path(settings))
    rt = PolicyRuntime.for_stage(settings, "matcher")
    return Matcher(settings, None, MatcherState(600.0, ZoneMap.from_table({}), 3600.0), rt)  # type: ignore[arg-type]


def test_the_matcher_searches_and_decides_in_the_metric_space(tmp_path):
    gallery, probes, labels = crowd(60, 5, seed=3)
    path = tmp_path / "metric.npz"
    background_metric().with_rule(1.05, 0.0).save(path)

    def named_right(m: Matcher) -> float:
        hits = [r.identify(m.threshold, m.margin) for r in asyncio.run(m._search(probes))]
        return float(np.mean([h is not None and h.subject_id == f"p{k}" for h, k in zip(hits, labels)]))

    with_metric = _matcher(tmp_path / "a", gallery, path)
    assert (with_metric.threshold, with_metric.margin) == (1.05, 0.0)  # the file's rule, not matcher.threshold
    raw = _matcher(tmp_path / "b", gallery)
    assert raw.threshold == Settings().matcher.threshold
    assert named_right(raw) < 0.5 < 0.9 < named_right(with_metric)
    with pytest.raises(MetricError, match="not found"):
        _matcher(tmp_path / "c", gallery, tmp_path / "nope.npz")
