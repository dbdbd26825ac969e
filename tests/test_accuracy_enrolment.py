"""Video-run enrolment: several views a traveller (real dlib on synthetic faces), and its cache."""

import numpy as np
import pytest

from paxsim.accuracy import ENROL_POSES, enrolment_views, read_enrolment_cache, template

dlib = pytest.importorskip("dlib")


def test_views_from_above_are_closer_to_the_multi_view_template_than_to_a_frontal_enrolment():
    """The face cameras look down on travellers (pitch −8…−15°) under their own light: a frontal portrait is
    further from those views than the template of :data:`ENROL_POSES` is (the cause of the video rank-1 gap)."""
    from scenario.faces import Light, build, portrait, random_identity, render_view
    from scenario.faces.dlibface import default_embedder
    from scenario.faces.jitter import scale_for_face_px

    emb = default_embedder()
    camera_light = Light(direction=(0.0, -0.4, 0.9), colour=(0.95, 0.98, 1.0), intensity=1.0)  # cam-security-1
    idents = [random_identity(s, sex=sex) for s, sex in ((11, "female"), (12, "male"), (13, "female"))]
    views = enrolment_views(idents)
    frontal = enrolment_views(idents, poses=[(0.0, 0.0)])
    gain = []
    for ident, v, f in zip(idents, views, frontal):
        assert len(v) >= 5 and len(f) == 1  # every enrolment pose is detected on these faces
        model = build(ident)
        for yaw, pitch in ((12.0, -14.0), (-8.0, -11.0)):
            img, _ = portrait(
                render_view(model, yaw, pitch, 0.0, camera_light, scale=scale_for_face_px(model, 80.0)), np.random.default_rng(1), pad=0.5
            )
            probe = emb.detect_embed(img, 1)
            assert probe is not None
            gain.append(np.linalg.norm(probe[1] - f[0]) - np.linalg.norm(probe[1] - template(v)))
    assert min(gain) > 0.03 and np.mean(gain) > 0.05, gain  # measured: 0.08-0.11


def test_cache_is_reused_only_when_it_holds_every_traveller_at_the_current_poses(tmp_path):
    rng = np.random.default_rng(0)
    views = {"T00001": rng.normal(size=(len(ENROL_POSES), 128)).astype(np.float32), "T00002": rng.normal(size=(4, 128)).astype(np.float32)}
    old = tmp_path / "old.npz"
    np.savez(old, T00001=views["T00001"][0], T00002=views["T00002"][0])  # frontal-only cache of an earlier version
    assert read_enrolment_cache(old, ["T00001"]) is None
    new = tmp_path / "new.npz"
    np.savez(new, **views, __poses__=np.asarray(ENROL_POSES, float))
    got = read_enrolment_cache(new, ["T00001", "T00002"])
    assert got is not None and set(got) == {"T00001", "T00002"} and got["T00002"].shape == (4, 128)
    assert read_enrolment_cache(new, ["T00001", "T00003"]) is None  # a traveller it does not hold
    assert read_enrolment_cache(new, ["T00001"], poses=[(0.0, 0.0)]) is None  # other poses
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert read_enrolment_cache(tmp_path / "bad.npz", ["T00001"]) is None
    assert template(views["T00002"]).shape == (128,)


def test_travellers_seen_only_as_dont_care_faces_are_enrolled_too(tmp_path):
    """link_sightings links a sighting to any ground-truth face: a traveller whose faces are all don't care (conf 0:
    partly hidden, small) must be in the gallery too, or their sightings are unidentifiable by construction."""
    from paxsim.accuracy import CameraTruth, RenderTruth, travellers_seen

    rows = np.array([[0, 7, 10, 10, 80, 80, 1], [0, 30, 200, 10, 87, 87, 0], [1, 30, 202, 10, 87, 87, 0]], float)
    cam = CameraTruth("cam-immigration-1", "immigration", 15.0, 2, rows, {7: "T00007", 30: "T00030"})
    truth = RenderTruth(tmp_path, 7, {}, {"cam-immigration-1": cam})
    assert travellers_seen(truth) == ["T00007", "T00030"]


def test_enrol_scenario_enrols_every_view_of_a_video_traveller(settings):
    """A video run enrols the views of a traveller as separate gallery rows (the matcher scores a subject by its
    closest view); a single vector still replaces one row, and the others keep the virtual model's vector."""
    from core.paths import gallery_path
    from matcher.gallery import Gallery
    from paxsim.infra import enrol_scenario
    from scenario.virtual import VirtualAirport

    ids, vecs, _ = VirtualAirport(settings.scenario, 5.0).enrolment()
    rng = np.random.default_rng(0)
    views = rng.normal(size=(6, 128)).astype(np.float32)
    single = rng.normal(size=128).astype(np.float32)
    enrol_scenario(settings, 5.0, {ids[0]: views, ids[1]: single})
    g = Gallery.load(gallery_path(settings))
    rows = [i for i, s in enumerate(g.subject_ids) if s == ids[0]]
    assert len(rows) == 6 and np.allclose(g.vectors[rows], views)
    assert g.subject_ids.count(ids[1]) == 1 and np.allclose(g.vectors[g.subject_ids.index(ids[1])], single)
    assert g.subject_ids.count(ids[2]) == 1 and np.allclose(g.vectors[g.subject_ids.index(ids[2])], vecs[2])
    assert len(g) == len(ids) + 5
