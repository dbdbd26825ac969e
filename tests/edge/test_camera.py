"""The per-camera pipeline on real dlib (no faces needed here): isolation of failing cameras,
backpressure with counted drops, sampling, resizing."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from edge.camera import Camera, CameraConfig, FrameResult
from edge.sources import Backoff, GeneratorSource, SourceState, StreamSource
from edge.vision.pool import VisionPool
from tests.edge.media import MjpegServer, frame, truncate, write_video


@pytest.fixture
def pool():
    p = VisionPool(2, "thread")
    yield p
    p.close()


def metric(name: str, camera: str) -> float:
    return REGISTRY.get_sample_value(name, {"camera": camera}) or 0.0


async def collect(cam: Camera) -> list[FrameResult]:
    return [r async for r in cam.results()]


async def test_failing_cameras_do_not_stop_the_others(tmp_path, pool):
    good = write_video(tmp_path / "good.mp4", n=40)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 300)
    server = MjpegServer(frames=10_000, fps=100).start()
    stream_cfg = CameraConfig(camera_id="cam-stream", source=server.url, reconnect_base_s=0.05, reconnect_attempts=2)
    cams = [
        Camera(CameraConfig(camera_id="cam-good", source=str(good)), pool),
        Camera(CameraConfig(camera_id="cam-missing", source=str(tmp_path / "missing.mp4")), pool),
        Camera(CameraConfig(camera_id="cam-corrupt", source=str(corrupt)), pool),
        Camera(CameraConfig(camera_id="cam-trunc", source=str(truncate(good, tmp_path / "t.mp4", 0.5))), pool),
        Camera(stream_cfg, pool, source=StreamSource("cam-stream", server.url, timeout_s=2, backoff=Backoff(0.05, attempts=2))),
    ]

    at_kill: list[float] = []

    async def kill_stream_after(n: int):
        while cams[4].source.stats.decoded < n:
            await asyncio.sleep(0.01)
        # a busy host can stall the stream past its read time-out before this (a reconnect that succeeds): only
        # what follows the server's death is determined
        at_kill.append(metric("paxsim_edge_source_reconnects_total", "cam-stream"))
        server.kill()

    killer = asyncio.create_task(kill_stream_after(10))
    results = await asyncio.wait_for(asyncio.gather(*(collect(c) for c in cams)), 60)
    await killer
    good_res, missing_res, corrupt_res, trunc_res, stream_res = results
    assert [r.frame_index for r in good_res] == list(range(40))  # a file read offline loses no frame
    assert cams[0].state is SourceState.ENDED
    assert missing_res == [] and cams[1].state is SourceState.FAILED
    assert corrupt_res == [] and cams[2].state is SourceState.FAILED
    assert trunc_res == [] and cams[3].state is SourceState.FAILED
    # a live stream may drop frames when the pipeline is busy (counted); it delivered before it died
    assert cams[4].source.stats.decoded >= 10 and stream_res and cams[4].state is SourceState.FAILED
    assert metric("paxsim_edge_frames_processed_total", "cam-good") == 40
    assert REGISTRY.get_sample_value("paxsim_edge_source_errors_total", {"camera": "cam-missing", "kind": "missing"}) == 1
    assert REGISTRY.get_sample_value("paxsim_edge_source_state", {"camera": "cam-stream", "paxsim_edge_source_state": "failed"}) == 1
    assert metric("paxsim_edge_source_reconnects_total", "cam-stream") - at_kill[0] == 2  # its 2 attempts, then failed
    assert cams[1].status()["last_error"].startswith("video file not found")


async def test_live_source_drops_and_counts_when_the_consumer_is_slow(pool):
    produced = 0

    def fast_camera():
        nonlocal produced
        while produced < 200:
            produced += 1
            yield frame(produced, 320, 240)

    src = GeneratorSource("cam-busy", fast_camera, fps=400, realtime=True)
    cam = Camera(CameraConfig(camera_id="cam-busy", source="synthetic:unused", queue_size=3, max_inflight=1), pool, source=src)
    assert cam.drop_when_full
    seen = 0
    max_queue = 0
    async for _r in cam.results():
        seen += 1
        max_queue = max(max_queue, metric("paxsim_edge_queue_frames", "cam-busy"))
        await asyncio.sleep(0.03)  # a slow consumer (e.g. a stalled publisher)
    assert src.stats.decoded == 200
    assert cam.dropped > 0 and metric("paxsim_edge_frames_dropped_total", "cam-busy") == cam.dropped
    assert seen + cam.dropped == 200  # every frame is either processed or counted as dropped
    assert max_queue <= 3


async def test_sampling_and_resize(tmp_path, pool):
    video = write_video(tmp_path / "v.mp4", n=25, fps=25.0, size=(320, 240))
    cfg = CameraConfig(camera_id="cam-sampled", source=str(video), sample_fps=5, max_width=160)
    cam = Camera(cfg, pool)
    res = await collect(cam)
    assert [r.frame_index for r in res] == [0, 5, 10, 15, 20]
    assert metric("paxsim_edge_frames_skipped_total", "cam-sampled") == 20
    assert cam.source.stats.decoded == 25


def test_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="extra"):
        CameraConfig(camera_id="x", source="a.mp4", bogus=1)


def test_load_cameras_from_yaml(tmp_path):
    from edge.camera import load_cameras

    path = tmp_path / "cams.yaml"
    path.write_text(
        "cameras:\n"
        "  - {camera_id: c1, zone: security, source: rtsp://10.0.0.5/stream1, sample_fps: 5, detector: {upsample: 1}}\n"
        "  - {camera_id: c2, zone: concourse, source: webcam:0, max_width: 640}\n"
    )
    c1, c2 = load_cameras(path)
    assert c1.sample_fps == 5 and c1.detector.upsample == 1 and c2.max_width == 640
    path.write_text("- {camera_id: c1, source: a.mp4}\n- {camera_id: c1, source: b.mp4}\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_cameras(path)
    path.write_text("- {camera_id: c1, source: a.mp4, detector: {upsample: 9}}\n")
    with pytest.raises(ValueError, match="camera #1"):
        load_cameras(path)
