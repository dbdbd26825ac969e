"""Motion-gated detection: the detector looks only where the frame moved or a track is expected."""

from __future__ import annotations

from edge.camera import Camera, CameraConfig
from edge.motion import MotionGate, MotionSettings, merge
from edge.sources import GeneratorSource
from edge.vision.detector import iou
from edge.vision.pool import VisionPool
from tests.edge.faces import background, walk_clip


def test_merge_unions_overlapping_boxes_only():
    assert sorted(merge([(0, 0, 10, 10), (5, 5, 10, 10), (50, 50, 5, 5)])) == [(0, 0, 15, 15), (50, 50, 5, 5)]


def test_gate_sees_what_moved_and_where_tracks_are_expected():
    gate = MotionGate(MotionSettings(enabled=True))
    still = background(640, 480)
    assert gate.regions(still, []) is None  # first frame: no background yet, scan everything
    assert gate.regions(still, []) == []  # nothing moved, no track: nothing to scan
    moved = still.copy()
    moved[200:300, 400:460] = (20, 20, 20)
    (r,) = gate.regions(moved, [])
    assert r[0] <= 400 and r[1] <= 200 and r[0] + r[2] >= 460 and r[1] + r[3] >= 300
    assert r[2] * r[3] < 0.2 * 640 * 480
    track = (100, 100, 40, 40)  # a person standing still is still looked at
    regions = MotionGate(MotionSettings(enabled=True))
    regions.regions(still, [])
    (t,) = regions.regions(still, [track])
    assert t[0] <= 60 and t[1] <= 60 and t[0] + t[2] >= 180 and t[1] + t[3] >= 180
    everything = 255 - still  # the whole frame changed (lights switched): scan it all
    assert gate.regions(everything, []) is None
    periodic = MotionGate(MotionSettings(enabled=True, full_every=3))  # a face that never moved is found too
    assert [periodic.regions(still, []) for _ in range(6)] == [None, [], None, [], [], None]


async def test_camera_with_motion_gating_tracks_the_walkers_and_idles_on_a_still_scene():
    frames, truth = walk_clip(12)
    still = [background(480, 360)] * 40  # long enough for the tracks to end and the background to settle
    with VisionPool(1, "thread") as pool:
        cfg = CameraConfig(camera_id="cam-motion", source="synthetic:x", motion=MotionSettings(enabled=True))
        cam = Camera(cfg, pool, source=GeneratorSource("cam-motion", lambda: iter(frames + still), realtime=False))
        results = [r async for r in cam.results()]
    walking, idle = results[:12], results[12:]
    assert [r.face_count for r in walking] == [2] * 12
    assert {o.track_id for r in walking for o in r.faces} == {1, 2}
    for r, boxes in zip(walking, truth):
        assert all(max(iou(o.box, b) for b in boxes) > 0.5 for o in r.faces)
    assert all(r.face_count == 0 for r in idle)
    from prometheus_client import REGISTRY

    idle_frames = REGISTRY.get_sample_value("paxsim_edge_frames_motion_idle_total", {"camera": "cam-motion"})
    assert idle_frames is not None and idle_frames >= 1  # once the tracks ended, the detector was not run
