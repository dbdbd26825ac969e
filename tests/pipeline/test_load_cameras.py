"""The load harness's replayed cameras: paced (live: an overloaded edge drops frames) or unpaced (every frame)."""

from __future__ import annotations

from pathlib import Path

from edge.camera import Camera, CameraConfig
from paxsim.load import video_cameras
from tests.edge.media import write_video


def _folder(tmp_path: Path) -> Path:
    for name in ("cam-gate-1", "cam-egate-1"):
        write_video(tmp_path / f"{name}.mp4", n=40, fps=20.0)
    return tmp_path


def test_paced_replicas_act_live_and_drop_when_the_edge_is_behind(tmp_path: Path):
    cams, replicas = video_cameras(_folder(tmp_path), 4, speed=0.5)
    assert [c["realtime"] for c in cams] == [True] * 4
    assert sorted(replicas) == ["cam-egate-1", "cam-egate-1-r1", "cam-gate-1", "cam-gate-1-r1"]
    assert sorted(c["start_frame"] for c in cams) == [0, 0, 20, 20]  # the second replica of each video starts halfway
    cam = Camera(CameraConfig(**cams[0]), pool=None)  # type: ignore[arg-type]
    assert cam.drop_when_full is True


def test_unpaced_replicas_hand_the_edge_every_frame(tmp_path: Path):
    cams, _ = video_cameras(_folder(tmp_path), 4, speed=0)
    assert [c["realtime"] for c in cams] == [False] * 4
    assert all("fps" not in c for c in cams)  # no pacing rate: the file's frames as fast as the edge takes them
    assert sorted(c["start_frame"] for c in cams) == [0, 0, 20, 20]
    cam = Camera(CameraConfig(**cams[0]), pool=None)  # type: ignore[arg-type]
    assert cam.drop_when_full is False  # a full queue blocks the reader instead of dropping frames


def test_only_videos_of_biometric_zones_are_replayed_and_none_is_a_clear_error(tmp_path: Path):
    """A render folder lists count-only zones first alphabetically (arrivals, check-in, curb...): a load test of
    those would measure nothing and still report a saturation point."""
    import pytest

    for name in ("cam-arrivals-1", "cam-curb-1", "cam-gate-1"):
        write_video(tmp_path / f"{name}.mp4", n=10, fps=20.0)
    cams, _ = video_cameras(tmp_path, 3, speed=0, biometric={"gate", "egate"})
    assert [c["zone"] for c in cams] == ["gate"] * 3
    with pytest.raises(ValueError, match="no video .* biometric zone"):
        video_cameras(tmp_path, 2, speed=0, biometric={"egate"})
