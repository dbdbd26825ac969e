from __future__ import annotations

import numpy as np
import pytest

from scenario.faces import Identity, build, portrait, random_identity, render_view
from scenario.faces.params import N_CONTINUOUS


def test_identity_is_deterministic_and_round_trips():
    a, b = random_identity(42), random_identity(42)
    assert a.to_dict() == b.to_dict()
    assert random_identity(43).to_dict() != a.to_dict()
    assert Identity.from_dict(a.to_dict()).to_dict() == a.to_dict()
    with pytest.raises(ValueError):
        Identity.from_dict({**a.to_dict(), "x": [float("nan")] * N_CONTINUOUS})
    with pytest.raises(ValueError):
        random_identity(1, sex="other")


def test_render_is_deterministic_and_identities_differ():
    m = build(random_identity(7))
    v1, v2 = render_view(m, 10, -5, 3, scale=40), render_view(build(random_identity(7)), 10, -5, 3, scale=40)
    assert np.array_equal(v1.bgr, v2.bgr) and np.array_equal(v1.alpha, v2.alpha)
    other = render_view(build(random_identity(8)), 10, -5, 3, scale=40)
    assert v1.bgr.shape != other.bgr.shape or np.abs(v1.bgr.astype(int) - other.bgr.astype(int)).mean() > 3


def test_yaw_moves_the_face_towards_image_right_and_pitch_up():
    m = build(random_identity(3))
    front = render_view(m, 0, 0, 0, scale=40)
    right = render_view(m, 30, 0, 0, scale=40)
    up = render_view(m, 0, 20, 0, scale=40)
    cx = lambda v: v.face_box[0] + v.face_box[2] / 2  # noqa: E731
    assert cx(right) > cx(front) + 2
    assert up.face_box[1] < front.face_box[1]


def test_face_box_scales_with_scale():
    m = build(random_identity(5))
    small, big = render_view(m, scale=30), render_view(m, scale=60)
    assert big.face_box[2] == pytest.approx(2 * small.face_box[2], rel=0.1)


def test_dlib_detects_and_embeds_a_handful_of_bank_faces():
    from scenario.bank import load_bank, load_bank_embeddings
    from scenario.calibration import enrol_view
    from scenario.faces.dlibface import default_embedder

    bank = load_bank()[:3]
    stored, _ = load_bank_embeddings()
    emb = default_embedder()
    for i, ident in enumerate(bank):
        img, box = enrol_view(build(ident))
        found = emb.detect_embed(img, 1)
        assert found is not None, f"bank identity {i} not detected"
        (x, y, w, h), e = found
        assert abs((x + w / 2) - (box[0] + box[2] / 2)) < box[2] / 2
        # the stored base embedding is what the real embedder gives on the frontal render
        assert np.linalg.norm(e - stored[i]) < 1e-3
    d01 = np.linalg.norm(stored[0] - stored[1])
    assert d01 > 0.3


def test_portrait_places_the_face_box():
    v = render_view(build(random_identity(9)), scale=50)
    img, box = portrait(v, np.random.default_rng(0))
    x, y, w, h = box
    assert img.dtype == np.uint8 and img.ndim == 3
    assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]


def test_cctv_background_views_are_small_dim_and_seen_from_above():
    from scenario.faces.jitter import jittered_view
    from scenario.metric import VIEWS

    m, rng = build(random_identity(5)), np.random.default_rng(0)
    cctv = [jittered_view(m, rng, VIEWS["cctv"].spec)[2] for _ in range(8)]
    assert all(-28 <= p["pitch"] <= -8 and 22 <= p["face_px"] <= 50 for p in cctv)
    stills = [jittered_view(m, rng, VIEWS["portrait"].spec)[2] for _ in range(8)]
    assert all(-10 <= p["pitch"] <= 10 and 70 <= p["face_px"] <= 140 for p in stills)
