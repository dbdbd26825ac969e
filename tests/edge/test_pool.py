"""The vision pool's two lanes: frame analysis first, a bounded embed lane that drops its oldest call."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from edge.vision.pool import EmbedDropped, VisionPool


def record(log: list, name: str, sleep: float = 0.0) -> str:
    time.sleep(sleep)
    log.append(name)
    return name


async def test_frames_go_before_waiting_embeddings_until_they_waited_too_long():
    log: list[str] = []
    with VisionPool(1, "thread", embed_max_wait_s=10.0) as pool:
        pool._slots = 1  # one call at a time makes the order observable
        busy = pool._call(True, record, log, "busy", 0.2)
        e1 = pool._call(False, record, log, "embed-1")
        f1 = pool._call(True, record, log, "frame-1")
        f2 = pool._call(True, record, log, "frame-2")
        assert pool.backlog == (2, 1)
        await asyncio.gather(busy, e1, f1, f2)
        assert log == ["busy", "frame-1", "frame-2", "embed-1"]

        log.clear()
        pool.embed_max_wait_s = 0.05  # an embedding that waited long enough goes first
        busy = pool._call(True, record, log, "busy", 0.2)
        e1 = pool._call(False, record, log, "embed-1")
        f1 = pool._call(True, record, log, "frame-1")
        await asyncio.gather(busy, e1, f1)
        assert log == ["busy", "embed-1", "frame-1"]


async def test_full_embed_lane_drops_the_oldest_and_counts_it():
    chip = np.zeros((150, 150, 3), np.uint8)
    with VisionPool(1, "thread", embed_queue=2, embed_max_wait_s=10.0) as pool:
        pool._slots = 1
        log: list[str] = []
        busy = pool._call(True, record, log, "busy", 0.3)
        calls = [asyncio.ensure_future(pool.embed([chip])) for _ in range(4)]
        out = await asyncio.gather(busy, *calls, return_exceptions=True)
        assert [type(o) for o in out[1:3]] == [EmbedDropped, EmbedDropped]
        for vecs, _ in out[3:]:
            assert vecs.shape == (1, 128) and np.isfinite(vecs).all()
        assert pool.embeds_dropped == 2


async def test_a_cancelled_waiting_call_is_skipped():
    log: list[str] = []
    with VisionPool(1, "thread") as pool:
        pool._slots = 1
        busy = pool._call(True, record, log, "busy", 0.1)
        gone = pool._call(True, record, log, "gone")
        gone.cancel()
        kept = pool._call(True, record, log, "kept")
        await asyncio.gather(busy, kept)
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert log == ["busy", "kept"]


async def test_cameras_count_dropped_embeddings_and_their_tracks_try_again():
    from prometheus_client import REGISTRY

    from edge.camera import Camera, CameraConfig
    from edge.sources import GeneratorSource
    from tests.edge.faces import walk_clip

    frames, _ = walk_clip(8)
    with VisionPool(1, "thread", embed_queue=1, embed_max_wait_s=10.0) as pool:
        cams = [
            Camera(
                CameraConfig(camera_id=f"cam-drop-{k}", source="synthetic:x", max_inflight=2),
                pool,
                source=GeneratorSource(f"cam-drop-{k}", lambda: iter(frames), realtime=False),
            )
            for k in range(3)
        ]

        async def run(cam):
            return [r async for r in cam.results()]

        await asyncio.gather(*(run(c) for c in cams))
    dropped = sum(c.embeds_dropped for c in cams)
    assert dropped > 0  # three cameras, one waiting embedding at most: some were dropped...
    assert sum(c.embedded for c in cams) > 0  # ...and some computed
    for c in cams:
        assert REGISTRY.get_sample_value("paxsim_edge_embeddings_dropped_total", {"camera": c.config.camera_id}) == c.embeds_dropped
    # a track whose embedding was dropped asks again on a later view: a camera that lost some still got some
    assert any(c.embeds_dropped and c.embedded for c in cams)
    assert pool.embeds_dropped >= 1
