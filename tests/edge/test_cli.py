from __future__ import annotations

import re

from typer.testing import CliRunner

from edge.cli import app
from edge.evaluate import load_mot
from tests.edge.media import write_video


def test_detect_writes_mot_and_json_and_fails_clearly_on_a_missing_file(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=6)
    runner = CliRunner()
    out = tmp_path / "det.txt"
    r = runner.invoke(app, ["detect", str(video), "--threads", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "6 frames" in r.output
    assert out.read_text() == ""  # no faces in this clip; every frame was still processed
    r = runner.invoke(app, ["detect", str(video), "--threads", "--format", "json"])
    assert r.exit_code == 0
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 6 and lines[0] == '{"frame": 1, "faces": []}'
    r = runner.invoke(app, ["detect", str(tmp_path / "missing.mp4"), "--threads"])
    assert r.exit_code == 2 and "not found" in r.output


def test_detect_is_motion_gated_unless_told_otherwise(tmp_path):
    """By default the detector looks only where a frame moved (a small square crosses this clip);
    ``--no-motion`` scans every frame whole."""
    video = write_video(tmp_path / "v.mp4", n=12)
    runner = CliRunner()
    r = runner.invoke(app, ["detect", str(video), "--threads", "--out", str(tmp_path / "a.txt")])
    assert r.exit_code == 0, r.output
    gated = re.search(r"12 frames \((\d+) looked at only where they moved\)", r.output)
    assert gated and 8 <= int(gated[1]) <= 11, r.output  # whole: the first frame (no background yet) and a few more
    r = runner.invoke(app, ["detect", str(video), "--threads", "--no-motion", "--out", str(tmp_path / "b.txt")])
    assert r.exit_code == 0, r.output
    assert "12 frames, " in r.output


def test_mot_lines_round_trip(tmp_path):
    from edge.camera import FaceObservation, FrameResult
    from edge.cli import mot_lines

    obs = FaceObservation("c", "z", 4, 0.0, 7, (10, 20, 64, 66), 0.8, 1.234)
    lines = mot_lines(FrameResult("c", "z", 4, 4, 0.0, 1, 1, [obs]))
    assert lines == ["5,7,10,20,64,66,1.234,-1,-1,-1"]
    (tmp_path / "d.txt").write_text(lines[0] + "\n")
    df = load_mot(tmp_path / "d.txt")
    assert df.loc[(5, 7), "Width"] == 64


def test_edge_track_log_needs_video_cameras():
    """``--track-log`` logs tracked faces of video cameras; with virtual cameras it is a clear error, not ignored."""
    from paxsim.cli import app as paxsim_app

    r = CliRunner().invoke(paxsim_app, ["edge", "--track-log", "tracks.jsonl", "--duration", "1"])
    assert r.exit_code == 2
    assert "--track-log needs --cameras" in r.output


def test_detect_runs_a_camera_from_the_edge_camera_yaml(tmp_path):
    video = write_video(tmp_path / "v.mp4", n=5)
    cams = tmp_path / "cameras.yaml"
    cams.write_text(
        "cameras:\n"
        f"  - {{camera_id: a, source: {video}, detector: {{kind: hog}}}}\n"
        f"  - {{camera_id: b, source: {video}, detect_interval: 2, detector: {{min_face_px: 40}}}}\n"
    )
    runner = CliRunner()
    r = runner.invoke(app, ["detect", str(cams), "--camera", "b", "--threads", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("{")]) == 5
    r = runner.invoke(app, ["detect", str(cams), "--camera", "zz", "--threads"])
    assert r.exit_code == 2 and "no camera 'zz'" in r.output and "a, b" in r.output
    r = runner.invoke(app, ["detect", str(tmp_path / "nope.yaml"), "--threads"])
    assert r.exit_code == 2 and "nope.yaml" in r.output
