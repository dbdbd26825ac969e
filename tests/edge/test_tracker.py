from __future__ import annotations

from edge.tracker import Tracker, TrackerSettings


def walk(x0: float, y0: float, dx: float, n: int, w: int = 60):
    return [(int(x0 + dx * i), int(y0), w, w) for i in range(n)]


def test_two_faces_keep_their_ids_while_walking():
    tr = Tracker()
    a, b = walk(10, 50, 6, 20), walk(400, 60, -6, 20)
    ids = []
    for i in range(20):
        out = tr.update(i, [a[i], b[i]], [0.5, 0.5])
        ids.append(tuple(o.track.track_id for o in out))
    assert set(ids) == {(1, 2)}
    assert tr.started == 2


def test_fast_mover_without_overlap_is_kept_by_centroid_and_velocity():
    tr = Tracker()
    boxes = walk(0, 100, 45, 10, w=60)  # 45 px per frame: consecutive boxes barely overlap (IoU 0.14)
    ids = {tr.update(i, [b], [0.5])[0].track.track_id for i, b in enumerate(boxes)}
    assert ids == {1}


def test_track_survives_short_gaps_and_ends_after_max_misses():
    tr = Tracker(TrackerSettings(max_misses=3))
    tr.update(0, [(100, 100, 60, 60)], [0.5])
    for i in range(1, 3):
        tr.update(i, [], [])
    assert tr.update(3, [(102, 100, 60, 60)], [0.5])[0].track.track_id == 1
    for i in range(4, 8):
        tr.update(i, [], [])
    assert not tr.tracks
    out = tr.update(8, [(102, 100, 60, 60)], [0.5])
    assert out[0].born and out[0].track.track_id == 2


def test_distant_face_starts_a_new_track():
    tr = Tracker()
    tr.update(0, [(10, 10, 50, 50)], [0.5])
    out = tr.update(1, [(300, 300, 50, 50)], [0.5])
    assert out[0].born and out[0].track.track_id == 2


def test_embedding_gate_birth_then_clearly_better_views_only():
    tr = Tracker(TrackerSettings(improve_margin=0.1, max_embeds=3))
    box = (100, 100, 60, 60)
    decisions = []
    for i, q in enumerate([0.40, 0.45, 0.49, 0.52, 0.30, 0.65, 0.90, 0.99, 1.0]):
        t = tr.update(i, [box], [q])[0].track
        if tr.should_embed(t, q):
            tr.mark_embedded(t, q)
            decisions.append(q)
    assert decisions == [0.40, 0.52, 0.65]  # birth, +0.12, +0.13; then max_embeds stops it


def test_min_hits_delays_report_and_embedding():
    tr = Tracker(TrackerSettings(min_hits=3))
    t = None
    flags = []
    for i in range(4):
        t = tr.update(i, [(100, 100, 60, 60)], [0.5])[0].track
        flags.append((tr.reportable(t), tr.should_embed(t, 0.5)))
    assert flags == [(False, False), (False, False), (True, True), (True, True)]


def test_embed_every_frame_baseline():
    tr = Tracker(TrackerSettings(embed_every_frame=True))
    t = tr.update(0, [(1, 1, 60, 60)], [0.5])[0].track
    tr.mark_embedded(t, 0.5)
    assert tr.should_embed(t, 0.1)


def test_predicted_boxes_follow_velocity():
    tr = Tracker()
    tr.update(0, [(100, 100, 60, 60)], [0.5])
    tr.update(1, [(110, 100, 60, 60)], [0.5])
    (x, y, w, h), = tr.predicted_boxes(3)
    assert x > 110 and y == 100 and w == 60


def test_views_below_the_quality_gate_are_never_embedded():
    tr = Tracker(TrackerSettings(min_quality=0.5))
    box = (100, 100, 60, 60)
    decisions = []
    for i, q in enumerate([0.3, 0.45, 0.55, 0.58, float("nan")]):
        t = tr.update(i, [box], [q])[0].track
        if tr.should_embed(t, q):
            tr.mark_embedded(t, q)
            decisions.append(q)
    assert decisions == [0.55]
