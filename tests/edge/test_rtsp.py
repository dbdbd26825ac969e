"""Real RTSP ingestion: a rendered airport clip re-encoded to H.264 and served by Debian's GStreamer RTSP
server (tests/edge/rtsp_server.py), read by ``paxsim detect`` and by the video edge, which must reconnect
and resume when the server is killed mid-stream and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker import topics as t
from broker.messages import Sighting, decode
from broker.reader import read_all
from core.config import Settings
from core.obs import free_port
from edge.camera import CameraConfig
from edge.cli import app
from edge.evaluate import load_mot
from edge.service import run_video_edge
from edge.vision.detector import iou
from scenario.render import render_all
from scenario.world import load_world

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


class RtspServer:
    """The GStreamer RTSP server as a child process; ``kill()`` is a camera dying (SIGKILL)."""

    def __init__(self, video: Path, port: int) -> None:
        self.video, self.port = video, port
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.video), str(self.port)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready", "RTSP server did not start"
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if not _gst_rtsp_available():
        if os.environ.get("CI"):
            pytest.fail("GStreamer RTSP server missing: make test installs gir1.2-gst-rtsp-server-1.0 and python3-gi")
        pytest.skip("GStreamer RTSP server not installed (make sysdeps)")
    out = tmp_path_factory.mktemp("rtsp")
    render_all(load_world(), out, 20.0, cameras=["cam-security-1"], video=True)
    return out / "cam-security-1"


@pytest.fixture
def server(clip: Path):
    s = RtspServer(clip / "video.mp4", free_port()).start()
    try:
        yield s
    finally:
        s.kill()


def test_detect_reads_an_rtsp_stream_and_finds_the_rendered_faces(server: RtspServer, clip: Path, tmp_path: Path):
    out = tmp_path / "det.txt"
    r = CliRunner().invoke(app, ["detect", server.url, "--frames", "45", "--threads", "--out", str(out)])
    assert r.exit_code == 0, r.output
    det, gt = load_mot(out), load_mot(clip / "gt" / "gt.txt")
    assert len(det) > 0
    gt_boxes: dict[int, list] = {}
    for (frame, _), row in gt.iterrows():
        gt_boxes.setdefault(int(frame), []).append((row.X - 1, row.Y - 1, row.Width, row.Height))
    # each detection is a rendered face: some truth box near that frame overlaps it (RTSP drops frames on a busy
    # host, so the client's frame count can lag the clip's by a few; faces move little in 6 frames at 10 fps)
    for (frame, _), row in det.iterrows():
        box = (row.X, row.Y, row.Width, row.Height)
        near = [b for f in range(frame - 6, frame + 7) for b in gt_boxes.get(f, [])]
        assert max((iou(box, b) for b in near), default=0.0) > 0.3, f"frame {frame}: {box} is no rendered face"


def test_video_edge_reconnects_to_a_killed_rtsp_server_and_resumes(server: RtspServer, client_settings: Settings, key_holder):
    from prometheus_client import REGISTRY

    cam_id = "rtsp-security"
    cam = CameraConfig(camera_id=cam_id, zone="security", source=server.url, reconnect_base_s=0.2, reconnect_max_s=1.0)

    def metric(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"camera": cam_id}) or 0.0

    async def wait_for(cond, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    marks: dict[str, float] = {}

    async def main() -> None:
        stop = asyncio.Event()
        edge = asyncio.create_task(run_video_edge(client_settings, stop, [cam], duration_s=90, workers=1))
        processed = "paxsim_edge_frames_processed_total"
        await wait_for(lambda: metric(processed) >= 20, 40, "frames from the first connection")
        reconnects = metric("paxsim_edge_source_reconnects_total")
        server.kill()  # the camera dies mid-stream
        await wait_for(lambda: metric("paxsim_edge_source_reconnects_total") > reconnects, 20, "a reconnect attempt")
        await asyncio.sleep(1.0)  # a few failed attempts while the server is down
        server.start()
        marks["back"] = time.time()
        before = metric(processed)
        await wait_for(lambda: metric(processed) >= before + 40, 40, "frames after the server came back")
        stop.set()
        await asyncio.wait_for(edge, 30)

    asyncio.run(main())
    sightings = [decode(r.value, Sighting) for r in asyncio.run(read_all(client_settings, t.SIGHTINGS.name))]
    mine = [s for s in sightings if s.camera_id == cam_id]
    assert any(s.captured_at < marks["back"] for s in mine), "no sighting before the server died"
    assert any(s.captured_at >= marks["back"] for s in mine), "no sighting after the server came back"
