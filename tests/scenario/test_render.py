from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from scenario.render import CameraRenderer, LiveSource, render_all
from scenario.world import ExposureSpec, build_world, load_spec, load_world

ROOT = Path(__file__).resolve().parents[2]


def _first_frame_sha(yaml_path: Path) -> str:
    code = (
        "import hashlib,sys; from scenario.world import load_world; from scenario.render import CameraRenderer;"
        f"f,_=CameraRenderer(load_world({str(yaml_path)!r}),'cam-a').render(0);"
        "print(hashlib.sha256(f.tobytes()).hexdigest())"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_same_seed_identical_ground_truth_and_first_frame(tiny_yaml: Path, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    render_all(load_world(tiny_yaml), a, 2.0, video=False)
    render_all(load_world(tiny_yaml), b, 2.0, video=False)
    for cam in ("cam-a", "cam-b"):
        ga, gb = (a / cam / "gt" / "gt.txt").read_text(), (b / cam / "gt" / "gt.txt").read_text()
        assert ga == gb
    assert (a / "cam-a" / "gt" / "gt.txt").read_text(), "tiny scenario shows no face on cam-a"
    f1, _ = CameraRenderer(load_world(tiny_yaml), "cam-a").render(0)
    f2, _ = CameraRenderer(load_world(tiny_yaml), "cam-a").render(0)
    assert f1.tobytes() == f2.tobytes()
    # and across processes (no per-process hash salt anywhere)
    assert _first_frame_sha(tiny_yaml) == hashlib.sha256(f1.tobytes()).hexdigest()
    f3, _ = CameraRenderer(load_world(tiny_yaml, seed=99), "cam-a").render(0)
    assert f3.tobytes() != f1.tobytes()


def test_frames_do_not_depend_on_render_order(tiny_yaml: Path):
    w = load_world(tiny_yaml)
    r1 = CameraRenderer(w, "cam-a")
    for i in range(8):
        r1.render(i)
    late, t_late = r1.render(8)
    cold, t_cold = CameraRenderer(w, "cam-a").render(8)
    assert np.array_equal(late, cold) and t_late == t_cold


def test_rendered_files_mp4_gt_manifest(tiny_yaml: Path, tmp_path: Path):
    import motmetrics as mm

    w = load_world(tiny_yaml)
    render_all(w, tmp_path, 2.0)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert {c["id"] for c in man["cameras"]} == {"cam-a", "cam-b"}
    assert len(man["identities"]) == 6
    ident = man["identities"][0]
    assert set(ident["consent"]) == {"egate-verification", "boarding", "flow-analytics", "model-training"}
    assert {"nationality_group", "sex", "age_band"} <= set(ident["demographics"])
    cap = cv2.VideoCapture(str(tmp_path / "cam-a" / "video.mp4"))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (120, 160, 3)
        n += 1
    assert n == 10
    gt = mm.io.loadtxt(str(tmp_path / "cam-a" / "gt" / "gt.txt"), fmt="mot16")
    assert len(gt) > 0
    assert gt.index.get_level_values(0).min() >= 1  # 1-based frames
    assert set(gt.index.get_level_values(1)) <= set(range(1, 7))
    assert ((gt["X"] >= 0) & (gt["X"] + gt["Width"] <= 160 + 1)).all()
    assert ((gt["Visibility"] >= 0) & (gt["Visibility"] <= 1)).all()
    assert "frameRate=5" in (tmp_path / "cam-a" / "seqinfo.ini").read_text()
    # the file holds exactly the renderer's truth, boxes 1-based as MOTChallenge wants
    r = CameraRenderer(w, "cam-a")
    lines = []
    for i in range(10):
        for f in r.render(i)[1]:
            x, y, ww, hh = f.box
            lines.append(f"{i + 1},{f.track_id},{x + 1},{y + 1},{ww},{hh},{int(f.counts)},1,{f.visibility:.3f}")
    assert (tmp_path / "cam-a" / "gt" / "gt.txt").read_text().splitlines() == lines


def test_live_source_yields_frames_with_truth(tiny_yaml: Path):
    w = load_world(tiny_yaml)
    src = LiveSource(w, "cam-a", seconds=1.0, epoch0=1000.0)
    got = list(src)
    assert len(got) == len(src) == 5
    for k, (i, ts, frame) in enumerate(got):
        assert i == k and ts == 1000.0 + k / 5
        assert frame.dtype == np.uint8 and frame.shape == (120, 160, 3)
        assert isinstance(src.truth(i), list)
    expected = [CameraRenderer(w, "cam-a").render(i)[1] for i in range(5)]
    assert [src.truth(i) for i in range(5)] == expected
    with_truth = list(LiveSource(w, "cam-a", seconds=0.4).with_truth())
    assert len(with_truth) == 2 and with_truth[0][3] == expected[0]


def test_truth_boxes_cover_drawn_faces(tiny_yaml: Path):
    """Pixels inside a visible face box differ from the empty background (a face is drawn there)."""
    w = load_world(tiny_yaml)
    r = CameraRenderer(w, "cam-a", noise=0)
    seen = 0
    for i in range(20):
        frame, truth = r.render(i)
        for f in truth:
            if f.visibility < 1 or f.box[2] < 6:
                continue
            x, y, ww, hh = f.box
            diff = np.abs(frame[y : y + hh, x : x + ww].astype(int) - r.background[y : y + hh, x : x + ww].astype(int))
            assert diff.mean() > 10
            seen += 1
    assert seen > 0


def test_cctv_style_uses_no_bank_face_and_degrades_the_image():
    path = ROOT / "scenario" / "cctv_airport.yaml"
    world = load_world(path)
    assert world.travellers and all(t.bank_index is None for t in world.travellers)  # faces the bank never saw
    face_cams = [c for c in world.cameras if c.faces]
    assert all(2.5 <= c.position[2] <= 6.0 and -35 <= c.pitch <= -15 for c in face_cams)
    dim = next(c for c in face_cams if c.exposure.gain < 1.0)
    r = CameraRenderer(world, dim.id)
    frame, _ = r.render(30)
    spec = load_spec(path)
    spec = spec.model_copy(update={"cameras": [c.model_copy(update={"exposure": ExposureSpec()}) for c in spec.cameras]})
    bright, _ = CameraRenderer(build_world(spec), dim.id).render(30)
    # low light as CCTV shows it: the automatic gain brings the level back, with the amplified sensor noise
    assert abs(frame.mean() - bright.mean()) < 0.15 * bright.mean()
    assert np.std(frame.astype(np.float32) - bright) > dim.exposure.noise  # the reference camera has noise 3
    assert r.render(30)[0].tobytes() == frame.tobytes()  # still a pure function of the frame index
