"""Fits the matcher's learned metric (``matcher.metric``, WCCN) on synthetic background people.

Background people are fresh random identities from a seed range no scenario, bench or test draws from
(``BACKGROUND_SEED`` upwards; the airport's travellers are drawn from 62-bit seeds, the bank is not used),
so every evaluation of the metric is on people it never saw. Each is enrolled from its frontal portrait and
seen in ``renders`` jittered views (``VIEWS``: stills like bench.portraits', or a ceiling camera's), all
through the edge's own vision (YuNet → 5-point alignment → ResNet). The first ``fit_people`` fit the within-person covariance; the rest are split
into enrolled people and strangers to calibrate the rule (threshold and margin) at a stated FPIR with
``matcher.calibration.operating_point``, in the learned space.

    paxsim scenario metric [--out scenario/data/metric.npz]     # ~4 min on 2 cores
    paxsim scenario metric --views cctv --out scenario/data/metric-cctv.npz
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np

from edge.vision.detector import DetectorSettings, iou
from edge.vision.embedder import DIM
from edge.vision.pool import analyze_frame, embed_chips
from matcher.calibration import OpenSetPoint, operating_point
from matcher.index import GalleryIndex, search_k
from matcher.metric import LearnedMetric, fit_wccn

from .calibration import enrol_view
from .faces import build, random_identity
from .faces.jitter import JitterSpec, jittered_view, scale_for_face_px

BACKGROUND_SEED = 1_000_000
THRESHOLDS = [round(0.50 + 0.02 * i, 2) for i in range(41)]  # 0.50 .. 1.30 (unit vectors: 0 .. 2)
MARGINS = [round(0.01 * i, 2) for i in range(0, 21, 2)]  # 0 .. 0.20


class ViewKind(NamedTuple):
    """How a background person is seen: the jitter of the views and the smallest face the detector looks for."""

    spec: JitterSpec
    min_face_px: int


# ``portrait`` is bench.portraits' jitter; ``cctv`` is a ceiling camera's: 22-50 px faces seen 8-28 degrees
# from above, dim, blurred, noisy, compressed (scenario/cctv_airport.yaml)
VIEWS = {
    "portrait": ViewKind(JitterSpec(), 24),
    "cctv": ViewKind(
        JitterSpec(
            yaw=30.0,
            pitch=10.0,
            pitch_centre=-18.0,
            face_px=(22.0, 50.0),
            intensity=(0.45, 1.0),
            blur=(0.4, 2.0),
            noise=(3.0, 7.0),
            jpeg=(45, 75),
        ),
        20,
    ),
}


def face_chip(img: np.ndarray, settings: DetectorSettings, box: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """The aligned chip of the detected face that overlaps ``box`` best (the largest face without a box)."""
    faces = [f for f in analyze_frame(img, settings.model_copy(update={"region_redetect": False})).faces if f.chip is not None]
    if box is not None:
        faces = [f for f in faces if iou(f.box, box) >= 0.3]
        faces.sort(key=lambda f: -iou(f.box, box))
    else:
        faces.sort(key=lambda f: -f.box[2])
    return faces[0].chip if faces else None


def view_chips(model, renders: int, settings: DetectorSettings, seed: int = 0, spec: JitterSpec = JitterSpec()) -> list[np.ndarray | None]:  # noqa: ANN001
    """The aligned chips of ``renders`` jittered views of ``model`` (None where the detector missed the face)."""
    rng = np.random.default_rng([seed, model.identity.seed])
    per_px = scale_for_face_px(model, 40.0) / 40.0
    views = (jittered_view(model, rng, spec, unit_scale=per_px) for _ in range(renders))
    return [face_chip(img, settings, box) for img, box, _ in views]


def person_templates(seed: int, renders: int, views_of: str = "portrait", view_seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """(enrolment template or None, (m, DIM) templates of the views the detector found) of identity ``seed``."""
    kind = VIEWS[views_of]
    settings = DetectorSettings(kind="yunet", min_face_px=kind.min_face_px)
    model = build(random_identity(seed))
    enrol = face_chip(enrol_view(model)[0], settings, None)
    views = [c for c in view_chips(model, renders, settings, view_seed, kind.spec) if c is not None]
    e = embed_chips([enrol])[0][0] if enrol is not None else None
    return e, (embed_chips(views)[0] if views else np.zeros((0, DIM), np.float32))


def _person(args: tuple[int, int, str]) -> tuple[np.ndarray | None, np.ndarray]:
    return person_templates(*args)


def background(
    seeds: list[int], renders: int, views_of: str = "portrait", workers: int = 2, progress: Callable[[int], None] | None = None
) -> list:
    """``person_templates`` of every seed, in ``workers`` processes."""
    out = []
    with ProcessPoolExecutor(workers) as ex:
        for k, r in enumerate(ex.map(_person, [(s, renders, views_of) for s in seeds], chunksize=4)):
            out.append(r)
            if progress:
                progress(k + 1)
    return out


def calibrate_rule(metric: LearnedMetric, enrolled: list, strangers: list, target_fpir: float) -> OpenSetPoint | None:
    """The operating point in the learned space: ``enrolled`` people's enrolments form the gallery and their
    views are the genuine probes; every view of ``strangers`` is a probe of someone never enrolled."""
    people = [(str(k), e, v) for k, (e, v) in enumerate(enrolled) if e is not None]
    index = GalleryIndex.build([k for k, _, _ in people], metric.apply(np.stack([e for _, e, _ in people])))
    k = search_k(1.0)
    genuine = [(who, r) for who, _, v in people if len(v) for r in index.search(metric.apply(v), k)]
    stranger_views = [v for _, v in strangers if len(v)]
    found = index.search(metric.apply(np.concatenate(stranger_views)), k) if stranger_views else []
    return operating_point(genuine, list(found), target_fpir, THRESHOLDS, MARGINS)


def build_metric(
    fit_people: int = 200,
    calibration_people: int = 100,
    renders: int = 5,
    shrinkage: float = 0.3,
    target_fpir: float = 0.01,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    views_of: str = "portrait",
) -> tuple[LearnedMetric, OpenSetPoint]:
    """Render, fit and calibrate (see the module docstring)."""
    total = fit_people + calibration_people
    seeds = [BACKGROUND_SEED + k for k in range(total)]
    people = background(seeds, renders, views_of, workers, progress=(lambda k: progress(k, total)) if progress else None)
    fit_part, cal_part = people[:fit_people], people[fit_people:]
    vecs, labels = [], []
    for k, (e, v) in enumerate(fit_part):
        rows = ([e] if e is not None else []) + list(v)
        vecs += rows
        labels += [k] * len(rows)
    desc = (
        f"{fit_people} random identities (seeds {BACKGROUND_SEED}+) x (frontal enrolment + {renders} {views_of} views), "
        f"YuNet + dlib ResNet; rule at FPIR <= {target_fpir:g} on {calibration_people} held-out people"
    )
    metric = fit_wccn(np.stack(vecs), labels, shrinkage, desc)
    half = len(cal_part) // 2
    point = calibrate_rule(metric, cal_part[:half], cal_part[half:], target_fpir)
    if point is None:
        raise RuntimeError(f"no threshold/margin in the grid reaches FPIR <= {target_fpir} on the held-out people")
    return metric.with_rule(point.threshold, point.margin), point
