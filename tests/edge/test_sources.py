"""Sources under bad input: each case ends in a clear state, a log line and a metric, never an exception."""

from __future__ import annotations

import asyncio
import logging
import time

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from edge.metrics import CameraMetrics
from edge.sources import (
    Backoff,
    GeneratorSource,
    ImageFolderSource,
    SourceState,
    StreamSource,
    VideoFileSource,
    WebcamSource,
    open_source,
)
from tests.edge.media import MjpegServer, frame, truncate, write_video


async def drain(src, limit: int = 10_000) -> list:
    out = []
    async for f in src.frames():
        out.append(f)
        if len(out) >= limit:
            src.stop()
    return out


def errors(camera: str, kind: str) -> float:
    return REGISTRY.get_sample_value("paxsim_edge_source_errors_total", {"camera": camera, "kind": kind}) or 0.0


def metric(name: str, camera: str) -> float:
    return REGISTRY.get_sample_value(name, {"camera": camera}) or 0.0


async def test_video_file_plays_all_frames_in_order(tmp_path):
    path = write_video(tmp_path / "ok.mp4", n=12)
    src = VideoFileSource("file-ok", path)
    frames = await drain(src)
    assert [f.index for f in frames] == list(range(12))
    assert [f.position for f in frames] == list(range(12))
    assert frames[0].image.shape == (120, 160, 3)
    assert src.state is SourceState.ENDED
    assert src.fps == pytest.approx(25.0)


async def test_start_frame_seeks_the_first_pass_and_loops_from_zero(tmp_path):
    """A staggered replica: the first pass starts at ``start_frame`` (the very frames, not just the counter), a
    loop restarts at 0, and frame indices keep counting (video position = (index + start) mod length)."""
    path = write_video(tmp_path / "v.mp4", n=12)
    reference = await drain(VideoFileSource("file-ref", path))
    src = VideoFileSource("file-start", path, loop=True, start_frame=5)
    frames = await drain(src, limit=20)
    assert [f.position for f in frames] == [*range(5, 12), *range(12), 0]
    assert [f.index for f in frames] == list(range(20))
    for f in frames:
        diff = np.abs(f.image.astype(int) - reference[(f.index + 5) % 12].image.astype(int))
        assert diff.mean() < 1.0, f"frame {f.index} is not video frame {(f.index + 5) % 12}"


async def test_missing_file_fails_with_log_and_metric(tmp_path, caplog):
    m = CameraMetrics("file-missing")
    src = VideoFileSource("file-missing", tmp_path / "nope.mp4", listener=m.source_listener)
    with caplog.at_level(logging.ERROR, logger="paxsim.edge.source"):
        assert await drain(src) == []
    assert src.state is SourceState.FAILED
    assert "not found" in src.last_error
    assert any("file-missing failed" in r.getMessage() and "not found" in r.getMessage() for r in caplog.records)
    assert errors("file-missing", "missing") == 1
    assert REGISTRY.get_sample_value("paxsim_edge_source_state", {"camera": "file-missing", "paxsim_edge_source_state": "failed"}) == 1


@pytest.mark.parametrize("content", [b"", b"\x00not a video at all" * 500], ids=["empty", "garbage"])
async def test_corrupt_file_fails(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    m = CameraMetrics("file-corrupt")
    before = errors("file-corrupt", "corrupt")
    src = VideoFileSource("file-corrupt", path, listener=m.source_listener)
    assert await drain(src) == []
    assert src.state is SourceState.FAILED
    assert errors("file-corrupt", "corrupt") == before + 1


async def test_truncated_mp4_fails_clearly(tmp_path):
    full = write_video(tmp_path / "full.mp4", n=30)
    src = VideoFileSource("file-trunc-mp4", truncate(full, tmp_path / "cut.mp4", 0.6))
    assert await drain(src) == []  # the index (moov) is at the end of an mp4: nothing is playable
    assert src.state is SourceState.FAILED
    assert "corrupt, truncated" in src.last_error


async def test_truncated_avi_plays_what_is_there_and_counts_it(tmp_path, caplog):
    full = write_video(tmp_path / "full.avi", n=30, fourcc="MJPG")
    m = CameraMetrics("file-trunc-avi")
    src = VideoFileSource("file-trunc-avi", truncate(full, tmp_path / "cut.avi", 0.5), listener=m.source_listener)
    with caplog.at_level(logging.WARNING, logger="paxsim.edge.source"):
        frames = await drain(src)
    assert 0 < len(frames) < 30
    assert src.state is SourceState.ENDED
    assert errors("file-trunc-avi", "truncated") == 1
    assert any("truncated" in r.getMessage() for r in caplog.records)


async def test_file_loops_and_realtime_paces(tmp_path):
    path = write_video(tmp_path / "loop.mp4", n=5, fps=50.0)
    src = VideoFileSource("file-loop", path, loop=True, realtime=True)
    t0 = time.monotonic()
    frames = await drain(src, limit=12)
    elapsed = time.monotonic() - t0
    assert [f.position for f in frames] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert [f.index for f in frames] == list(range(12))
    assert elapsed >= 11 / 50.0 * 0.9  # paced at the file's 50 fps, not as fast as possible
    assert src.state is SourceState.ENDED


async def test_image_folder_skips_zero_size_and_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "001.png"), frame(1))
    (tmp_path / "002.png").write_bytes(b"")
    (tmp_path / "003.jpg").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "004.png"), frame(4))
    m = CameraMetrics("folder")
    src = ImageFolderSource("folder", tmp_path, listener=m.source_listener)
    frames = await drain(src)
    assert [f.position for f in frames] == [0, 3]
    assert src.stats.bad == 2 and metric("paxsim_edge_frames_bad_total", "folder") == 2
    assert metric("paxsim_edge_frames_decoded_total", "folder") == 2
    assert src.state is SourceState.ENDED


async def test_missing_or_empty_folder_fails(tmp_path):
    assert await drain(ImageFolderSource("f1", tmp_path / "nope")) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    src = ImageFolderSource("f2", empty)
    assert await drain(src) == []
    assert src.state is SourceState.FAILED and "no images" in src.last_error


async def test_zero_size_frames_are_skipped_then_fail_when_endless():
    def gen():
        yield frame(0)
        yield np.zeros((0, 0, 3), np.uint8)
        yield None
        yield frame(3)

    src = GeneratorSource("gen-zero", gen, realtime=False)
    frames = await drain(src)
    assert len(frames) == 2 and src.stats.bad == 2 and src.state is SourceState.ENDED

    def only_empty():
        while True:
            yield np.zeros((0, 640, 3), np.uint8)

    src = GeneratorSource("gen-empty", only_empty, realtime=False)
    assert await drain(src) == []
    assert src.state is SourceState.FAILED and src.stats.bad == src.max_bad_in_row
    assert errors("gen-empty", "empty-frames") == 0  # no listener attached: metrics are the camera's job
    assert src.stats.errors == {"empty-frames": 1}


async def test_stream_dies_then_reconnects_with_backoff_then_fails():
    server = MjpegServer(frames=10_000, fps=100).start()
    m = CameraMetrics("stream-dies")
    states: list[SourceState] = []

    def listener(s, event, value):
        m.source_listener(s, event, value)
        if event == "state":
            states.append(value)

    src = StreamSource("stream-dies", server.url, timeout_s=2.0, backoff=Backoff(base=0.05, factor=2.0, attempts=3), listener=listener)
    got = []
    async for f in src.frames():
        got.append(f)
        if len(got) == 15:
            server.kill()  # the camera dies mid-stream
    assert len(got) >= 15
    assert src.state is SourceState.FAILED
    assert states[:2] == [SourceState.STARTING, SourceState.RUNNING]
    assert SourceState.RECONNECTING in states and states[-1] is SourceState.FAILED
    assert src.stats.reconnects == 3
    assert src.stats.backoff_s == [0.05, 0.1, 0.2]  # exponential backoff between reconnect attempts
    assert metric("paxsim_edge_source_reconnects_total", "stream-dies") == 3
    assert metric("paxsim_edge_source_backoff_seconds", "stream-dies") == 0.2
    assert errors("stream-dies", "read") == 1 and errors("stream-dies", "connect") == 3


async def test_stream_recovers_when_the_server_comes_back():
    server = MjpegServer(frames=20, fps=100).start()  # closes the connection after 20 frames
    src = StreamSource("stream-back", server.url, timeout_s=2.0, backoff=Backoff(base=0.05, attempts=0))
    got = []
    try:
        async for f in src.frames():
            got.append(f)
            if len(got) == 30:
                src.stop()
    finally:
        server.kill()
    assert len(got) == 30 and src.stats.reconnects >= 1
    assert [f.index for f in got] == list(range(30))


async def test_unreachable_stream_and_missing_webcam_retry_then_fail():
    src = StreamSource("stream-none", "http://127.0.0.1:9/none.mjpg", timeout_s=0.5, backoff=Backoff(base=0.01, attempts=2))
    assert await drain(src) == [] and src.state is SourceState.FAILED and src.stats.reconnects == 2
    cam = WebcamSource("webcam-none", "/dev/video-paxsim-absent", backoff=Backoff(base=0.01, attempts=1))
    assert await drain(cam) == [] and cam.state is SourceState.FAILED and "cannot open webcam" in cam.last_error


def test_open_source_picks_the_kind(tmp_path):
    assert isinstance(open_source("a", "rtsp://10.0.0.1/cam"), StreamSource)
    assert isinstance(open_source("a", "http://x/y.mjpg"), StreamSource)
    assert isinstance(open_source("a", "webcam:0"), WebcamSource)
    assert open_source("a", "v4l2:/dev/video2").device == "/dev/video2"
    assert isinstance(open_source("a", str(tmp_path)), ImageFolderSource)
    assert isinstance(open_source("a", "clip.mp4", loop=True), VideoFileSource)
    assert isinstance(open_source("a", "synthetic:cam-1"), GeneratorSource)


async def test_stop_ends_a_live_source_promptly():
    def endless():
        i = 0
        while True:
            i += 1
            yield frame(i)

    src = GeneratorSource("gen-stop", endless, fps=1000, realtime=True)

    async def stopper():
        await asyncio.sleep(0.1)
        src.stop()

    task = asyncio.create_task(stopper())
    frames = await asyncio.wait_for(drain(src), 5)
    await task
    assert frames and src.state is SourceState.ENDED


async def test_gray_and_alpha_frames_become_bgr_and_float_frames_fail_the_source():
    def gen():
        yield np.zeros((10, 12), np.uint8)
        yield np.zeros((10, 12, 4), np.uint8)
        yield np.zeros((10, 12, 3), np.float32)

    src = GeneratorSource("gen-formats", gen, realtime=False)
    frames = await drain(src)
    assert [f.image.shape for f in frames] == [(10, 12, 3), (10, 12, 3)]
    assert src.state is SourceState.FAILED and "dtype" in src.last_error


async def test_synthetic_live_camera_from_the_scenario_renderer():
    src = open_source("syn", "synthetic:cam-security-1")
    frames = await drain(src, limit=3)
    assert len(frames) == 3 and frames[0].image.shape == (480, 640, 3)
    assert src.fps > 0 and src.state is SourceState.ENDED  # the camera's fps, from the scenario
    bad = open_source("syn-bad", "synthetic:no-such-camera")
    assert await drain(bad) == []
    assert bad.state is SourceState.FAILED and "no camera 'no-such-camera'" in bad.last_error
