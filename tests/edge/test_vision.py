"""Real dlib models on the project's synthetic faces: detection, regions, alignment, quality, embedding,
and the camera pipeline end to end (tracks, gated embeddings, filter hook, Sighting conversion)."""

from __future__ import annotations

import numpy as np
import pytest

from broker.messages import Sighting, decode, encode
from edge.camera import Camera, CameraConfig, FaceObservation, observation_to_sighting
from edge.sources import GeneratorSource
from edge.vision import quality
from edge.vision.detector import DetectorSettings, HogDetector, YunetDetector, iou
from edge.vision.models import RESNET_EMBEDDER, model_path
from edge.vision.pool import VisionPool, analyze_frame, embed_chips
from tests.edge.faces import scene, walk_clip


def rgb(img):
    return np.ascontiguousarray(img[:, :, ::-1])


def test_models_are_found_and_the_68_point_model_is_refused():
    assert model_path(RESNET_EMBEDDER).endswith(".dat")
    with pytest.raises(ValueError):
        model_path("shape_predictor_68_face_landmarks.dat")


def test_hog_finds_synthetic_faces_and_nothing_in_an_empty_scene():
    img, boxes = scene([(1, 100, 60, 80, 0.0), (2, 90, 360, 120, 0.0)])
    dets = HogDetector().detect(rgb(img))
    assert len(dets) == 2
    for b in boxes:
        assert max(iou(b, d.box) for d in dets) > 0.5
    empty, _ = scene([])
    assert HogDetector().detect(rgb(empty)) == []


def test_yunet_finds_small_and_large_faces_and_nothing_in_an_empty_scene():
    img, boxes = scene([(1, 110, 60, 80, 0.0), (2, 28, 360, 120, 0.0), (3, 44, 480, 300, 0.0)])
    dets = YunetDetector().detect(rgb(img))
    assert len(dets) == 3  # a 28 px face too: the default min_face_px is 24
    for b in boxes:  # boxes land on dlib's convention (the truth boxes are dlib-style)
        assert max(iou(b, d.box) for d in dets) > 0.5
    assert all(0.6 <= d.score == d.confidence <= 1.0 for d in dets)
    empty, _ = scene([])
    assert YunetDetector().detect(rgb(empty)) == []


def test_yunet_scale_follows_min_face_px():
    det = YunetDetector(DetectorSettings(min_face_px=48))
    assert det.scale_for(640, 480) == pytest.approx(16 / 48)
    assert det.scale_for(640, 480, 8) == 1.0  # never upscaled
    assert YunetDetector().scale_for(3840, 2160, 8) == pytest.approx(960 / 3840)  # libfacedetection's input cap
    img, _ = scene([(3, 28, 300, 200, 0.0)])
    assert YunetDetector(DetectorSettings(min_face_px=24)).detect(rgb(img))
    coarse = YunetDetector(DetectorSettings(min_face_px=96, region_redetect=False))
    assert coarse.detect(rgb(img)) == []  # scanned at 1/8: a 28 px face is 3.5 px


def test_a_face_cut_by_the_edge_of_a_scanned_crop_keeps_its_whole_box():
    # a motion region (or a drifted track's region) whose lower edge runs through the face: the detector still
    # sees it, and its box must be the face's, not the part inside the crop
    img, (box,) = scene([(3, 80, 300, 200, 0.0)])
    x, y, w, h = box
    cut = (x - 150, y - 200, w + 300, 200 + int(h * 0.7))  # bigger than MIN_CROP; ends 70 % down the face
    for det in (YunetDetector(), HogDetector(DetectorSettings(kind="hog", upsample=1))):
        (part,) = det.detect(rgb(img), only=[cut])
        assert part.box[1] + part.box[3] > cut[1] + cut[3] + 8, (type(det).__name__, part.box)  # past the crop's edge
        assert part.box[2] == part.box[3] or abs(part.box[2] - part.box[3]) <= 1  # square, as both detectors draw faces
        assert iou(part.box, box) > 0.6, (type(det).__name__, part.box, box)


def test_region_redetection_finds_a_small_face_the_whole_frame_pass_misses():
    img, (box,) = scene([(3, 40, 300, 200, 0.0)])
    det = HogDetector(DetectorSettings(kind="hog", upsample=0))
    assert det.detect(rgb(img)) == []  # ~40 px: below HOG's 80 px window at upsample 0
    found = det.detect(rgb(img), regions=[box])
    assert len(found) == 1 and iou(found[0].box, box) > 0.4


def test_analysis_gives_landmarks_chip_and_a_quality_that_prefers_frontal_views():
    front, (fb,) = scene([(4, 110, 200, 100, 0.0)])
    turned, _ = scene([(4, 110, 200, 100, 28.0)])
    a = analyze_frame(front, DetectorSettings())
    (f,) = a.faces
    assert f.chip.shape == (150, 150, 3) and f.chip.dtype == np.uint8
    x, y, w, h = f.box
    assert ((f.landmarks[:, 0] >= x) & (f.landmarks[:, 0] <= x + w)).all()
    assert 0.0 <= f.quality <= 1.0
    b = analyze_frame(turned, DetectorSettings())
    if b.faces:  # a strongly turned face may not be detected at all; when it is, it scores lower
        assert quality.frontality(b.faces[0].landmarks) < quality.frontality(f.landmarks)
        assert b.faces[0].quality < f.quality


def test_views_that_cannot_reach_their_bar_get_no_landmarks():
    img, (box,) = scene([(4, 110, 200, 100, 0.0)])
    (full,) = analyze_frame(img, DetectorSettings(), regions=[box], bars=[0.0], histograms=True).faces
    assert full.measured and full.hist is not None and full.hist.sum() == pytest.approx(1.0)
    bound = quality.upper_bound(full.box[2], full.score)
    assert full.quality <= bound
    (skip,) = analyze_frame(img, DetectorSettings(), regions=[box], bars=[bound + 0.01]).faces
    assert not skip.measured and np.isnan(skip.quality) and skip.landmarks is None and skip.hist is None
    (new,) = analyze_frame(img, DetectorSettings(), regions=[], default_bar=float("inf")).faces  # a count-only camera
    assert not new.measured


def test_a_weak_face_is_kept_only_where_a_live_track_is_expected():
    """Below ``min_score`` and above ``track_score`` a face is weak: analysis keeps it only when it overlaps a live
    track's predicted box (the tracker pairs weak faces by overlap and drops the rest)."""
    img, (box,) = scene([(4, 110, 200, 100, 0.0)])
    st = DetectorSettings(min_score=0.999, track_score=0.3)  # this clear face scores below 0.999: weak here
    assert analyze_frame(img, st).faces == []
    (f,) = analyze_frame(img, st, regions=[box]).faces
    assert f.weak and iou(f.box, box) > 0.5
    (strong,) = analyze_frame(img, DetectorSettings(track_score=0.3)).faces
    assert not strong.weak
    assert analyze_frame(img, DetectorSettings(min_score=0.999, track_score=0.999), regions=[box]).faces == []  # no weak faces


def test_a_face_well_below_the_cameras_declared_size_continues_a_track_but_never_starts_one():
    """Narrower than ``start_share`` of the camera's ``min_face_px``, a face is weak whatever its score: it can
    continue a live track (a traveller walking away) but not start one (a speck of background)."""
    img, (box,) = scene([(3, 60, 300, 200, 0.0)])
    big = DetectorSettings(min_face_px=100)  # 60 px < 0.75 x 100; found by the full-resolution re-scan of the track
    assert analyze_frame(img, big).faces == []
    (f,) = analyze_frame(img, big, regions=[box]).faces
    assert f.weak and f.score >= big.min_score and iou(f.box, box) > 0.5  # a confident face, weak for its size
    (g,) = analyze_frame(img, DetectorSettings(min_face_px=60)).faces  # 60 px >= 0.75 x 60
    assert not g.weak
    (h,) = analyze_frame(img, big.model_copy(update={"start_share": 0.0}), regions=[box]).faces
    assert not h.weak


def test_embeddings_separate_identities():
    views = {}
    for seed in (5, 6):
        for k, (px, yaw) in enumerate([(100, 0.0), (120, 10.0)]):
            img, _ = scene([(seed, px, 150 + 20 * k, 100, yaw)])
            (f,) = analyze_frame(img, DetectorSettings()).faces
            views[(seed, k)] = f.chip
    vecs, _ = embed_chips(list(views.values()))
    assert vecs.shape == (4, 128) and vecs.dtype == np.float32 and np.isfinite(vecs).all()
    same = [np.linalg.norm(vecs[0] - vecs[1]), np.linalg.norm(vecs[2] - vecs[3])]
    diff = [np.linalg.norm(vecs[i] - vecs[j]) for i in (0, 1) for j in (2, 3)]
    assert max(same) < min(diff)


async def test_camera_tracks_and_embeds_once_per_track_in_a_process_pool():
    frames, truth = walk_clip(12)
    withheld: list[FaceObservation] = []

    def no_small_faces(obs: FaceObservation):  # a stand-in edge filter: drop faces narrower than 100 px
        if obs.box[2] < 100:
            withheld.append(obs)
            return None
        return obs

    with VisionPool(2, "process") as pool:
        await pool.warm()
        src = GeneratorSource("cam-walk", lambda: iter(frames), realtime=False)
        cam = Camera(CameraConfig(camera_id="cam-walk", zone="security", source="synthetic:x"), pool, [no_small_faces], source=src)
        results = [r async for r in cam.results()]
    assert len(results) == 12
    assert [r.face_count for r in results] == [2] * 12
    kept = [o for r in results for o in r.faces]
    assert {o.track_id for o in kept} | {o.track_id for o in withheld} == {1, 2}  # two tracks, no fragments
    assert cam.tracker.started == 2
    assert 2 <= cam.embedded <= 4  # once per track (best of its first frames), maybe once more on a clearly better view
    embedded = [o for o in kept if o.embedding is not None]
    first = [min((o for o in embedded if o.track_id == t), key=lambda o: o.frame_index) for t in {o.track_id for o in embedded}]
    assert first and all(o.frame_index < cam.tracker.settings.settle_frames for o in first)  # best shot within settling
    assert all(o.embedding.shape == (128,) and 0 < o.quality <= 1 for o in embedded)
    unmeasured = [o for o in kept if o.embedding is None and np.isnan(o.quality)]
    assert unmeasured  # views of embedded tracks that could not earn another embedding: no landmarks computed
    assert all(o.box[2] >= 100 for o in kept) and withheld
    s = observation_to_sighting(first[0])
    assert isinstance(s, Sighting) and len(s.embedding) == 512 and s.zone == "security"
    assert decode(encode(s), Sighting).track_id == first[0].track_id


async def test_detect_interval_runs_the_detector_on_every_kth_frame_and_the_tracker_carries_the_boxes():
    frames, truth = walk_clip(12)
    calls = 0
    with VisionPool(1, "thread") as pool:
        analyze = pool.analyze

        async def counted(*a, **kw):
            nonlocal calls
            calls += 1
            return await analyze(*a, **kw)

        pool.analyze = counted  # type: ignore[method-assign]
        src = GeneratorSource("cam-k3", lambda: iter(frames), realtime=False)
        cam = Camera(CameraConfig(camera_id="cam-k3", source="synthetic:x", detect_interval=3), pool, source=src)
        results = [r async for r in cam.results()]
    assert calls == 4 and len(results) == 12  # frames 0, 3, 6, 9 detected; the rest carried
    assert [r.face_count for r in results] == [2] * 12
    assert {o.track_id for r in results for o in r.faces} == {1, 2}  # no fragments across the gaps
    for r, boxes in zip(results, truth):  # carried boxes follow the walkers (constant-velocity prediction)
        for o in r.faces:
            assert max(iou(o.box, b) for b in boxes) > 0.3
    carried = [o for i, r in enumerate(results) if i % 3 for o in r.faces]
    assert carried and all(o.embedding is None and o.score == 0.0 and np.isnan(o.quality) for o in carried)
    assert cam.embedded >= 2
