"""The edge agent process: cameras → sightings on the broker.

``run_virtual_edge`` drives virtual cameras (``edge.sources.virtual``: embedding space, no pixels); ``run_video_edge``
drives real video cameras (``edge.camera``: files, streams, webcams, synthetic live cameras). The zone rule of
the edge applies here: a camera outside the biometric zones publishes counts only (ZoneCount), never an
embedding. Ground truth (event id → traveller) is written to a local file for evaluation and never published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter as Tally
from collections import deque
from pathlib import Path
from typing import IO

from prometheus_client import Counter

from broker import topics as t
from broker.clients import start_producer
from broker.messages import Sighting, ZoneCount, embedding_to_bytes, encode
from core.config import Settings
from edge import metricnames as edge_metrics
from edge.publisher import DROPPED, Publisher
from edge.sources.virtual import VirtualCamera, VirtualFeed, VirtualSighting
from policy.crypto import KeyExpired, KeyUnavailable
from policy.filters import EdgeContext
from policy.runtime import PolicyRuntime

log = logging.getLogger("paxsim.edge")

SIGHTINGS = Counter(edge_metrics.SIGHTINGS_TOTAL, "Face sightings produced by cameras", ["camera"])
COUNT_ONLY = Counter(edge_metrics.COUNT_ONLY_FACES_TOTAL, "Faces in non-biometric zones, published as counts only", ["camera"])

UNSEALABLE = Counter("paxsim_edge_unsealable_total", "Sightings dropped because no live epoch key could seal them", ["reason"])

TICK_S = 0.05
LATE_S = 1.0  # a virtual sighting this far behind real time is dropped (counted), like a frame the edge could not analyse
COUNT_WINDOW_S = 1.0
START_TIMEOUT_S = 60.0  # a video edge's --duration starts at its first frame, or after this long without one
SCHEDULE_WINDOW_S = 0.1
VIRTUAL_FACE_PX = 96  # virtual sightings have no pixels; they stand for a face of this nominal width


def open_policy(settings: Settings) -> PolicyRuntime:
    """The edge's policy runtime. Fails closed: without the run's key holder no embedding may leave the edge."""
    return PolicyRuntime.for_stage(settings, "edge", policy_path=settings.policy.file, require_keys=True, sighting_keys="seal")


def biometric_zones(rt: PolicyRuntime) -> set[str]:
    return {z for z, r in rt.holder.current.zones.items() if r.biometric}


def offer_sighting(pub: Publisher, rt: PolicyRuntime, s: Sighting) -> bool:
    """Seal the embedding under the current epoch key and queue it; False if it was dropped (counted)."""
    try:
        sealed = rt.seal(s)
    except KeyExpired:
        UNSEALABLE.labels("expired").inc()  # older than its retention already: must not be published
        return False
    except KeyUnavailable:
        UNSEALABLE.labels("no_key").inc()
        return False
    SIGHTINGS.labels(s.camera_id).inc()
    return pub.offer(t.SIGHTINGS.name, encode(sealed), s.camera_id.encode())


async def run_virtual_edge(
    settings: Settings,
    stop: asyncio.Event,
    airport: VirtualFeed,
    duration_s: float,
    ground_truth: Path | None = None,
    shard: tuple[int, int] = (1, 1),
) -> int:
    """Publish ``airport``'s sightings in real time for ``duration_s``; return how many were offered.

    ``shard=(i, n)``: this agent runs only the cameras whose index modulo ``n`` is ``i - 1``. Every agent
    simulates the same airport from the same seed, so ``n`` agents together publish each sighting once."""
    index, count = shard
    mine = [c for k, c in enumerate(airport.cameras) if k % count == index - 1]
    mine_ids = {c.camera_id for c in mine}
    rt = open_policy(settings)
    chain = rt.edge_chain()
    producer = await start_producer(settings)
    pub = Publisher(producer, max_wait_s=LATE_S / 2)  # queued before a stall: shed, not sent late
    sender = asyncio.create_task(pub.run())
    background = asyncio.create_task(rt.background(stop))
    nonce = os.urandom(4).hex()
    track_ids: dict[tuple[str, str], int] = {}
    window: Tally[str] = Tally()
    gt = ground_truth.open("a") if ground_truth else None
    offered = 0
    start = time.time()
    window_start, t_prev = start, 0.0
    box = (0, 0, VIRTUAL_FACE_PX, VIRTUAL_FACE_PX)
    due: deque[VirtualSighting] = deque()
    next_window = 0
    log.info(
        "virtual edge running",
        extra={"cameras": len(mine), "shard": f"{index}/{count}", "travellers": len(airport.travellers), "duration_s": duration_s},
    )
    try:
        while not stop.is_set() and t_prev < duration_s:
            await asyncio.sleep(TICK_S)
            t_now = min(time.time() - start, duration_s)
            # generated in fixed windows, whatever the tick timing: the same seed gives the same load every run
            while next_window * SCHEDULE_WINDOW_S < t_now:
                due.extend(airport.sightings(next_window * SCHEDULE_WINDOW_S, min((next_window + 1) * SCHEDULE_WINDOW_S, duration_s)))
                next_window += 1
            while due and (due[0].t < t_now or t_now >= duration_s):
                vs = due.popleft()
                cam = vs.camera
                if cam.camera_id not in mine_ids:
                    continue
                if t_now - vs.t > LATE_S:  # overloaded: shed, counted, instead of falling further behind unseen
                    DROPPED.labels("late").inc()
                    continue
                if not chain(EdgeContext(cam.zone, 1.0, box)).allow:
                    window[cam.camera_id] += 1  # not biometric here: the face becomes a count
                    COUNT_ONLY.labels(cam.camera_id).inc()
                    continue
                claim = vs.claimed_subject or ""  # e-gate: sealed with the face (policy.crypto.seal_sighting)
                offered += 1
                track = track_ids.setdefault((cam.camera_id, vs.traveller_id), len(track_ids) + 1)
                s = Sighting(
                    event_id=f"{cam.camera_id}-{nonce}-{offered}",
                    camera_id=cam.camera_id,
                    zone=cam.zone,
                    captured_at=start + vs.t,
                    track_id=track,
                    box=box,
                    quality=1.0,
                    embedding=embedding_to_bytes(vs.embedding),
                    claimed_subject=claim,
                )
                if offer_sighting(pub, rt, s) and gt:
                    row = {"event_id": s.event_id, "traveller_id": vs.traveller_id, "camera_id": cam.camera_id, "zone": cam.zone}
                    if vs.claimed_subject:
                        row["claimed"] = vs.claimed_subject
                    gt.write(json.dumps(row) + "\n")
            t_prev = t_now
            now = time.time()
            if now - window_start >= COUNT_WINDOW_S:
                _offer_counts(pub, mine, biometric_zones(rt), window, window_start, now)
                window.clear()
                window_start = now
        _offer_counts(pub, mine, biometric_zones(rt), window, window_start, time.time())
    finally:
        background.cancel()
        await pub.close()
        await sender
        await producer.stop()
        rt.close()
        if gt:
            gt.close()
    log.info("virtual edge finished", extra={"offered": offered})
    return offered


def _offer_counts(pub: Publisher, cameras: list[VirtualCamera], biometric: set[str], window: Tally[str], t0: float, t1: float) -> None:
    for cam in cameras:
        if cam.zone in biometric:
            continue
        zc = ZoneCount(camera_id=cam.camera_id, zone=cam.zone, window_start=t0, window_end=t1, faces=window[cam.camera_id])
        pub.offer(t.ZONE_COUNTS.name, encode(zc), cam.camera_id.encode())


# --- video cameras ---------------------------------------------------------------------------------


def policy_filter(chain):
    """Edge policy chain (policy.filters.edge_chain) as a camera observation filter: an observation that
    carries an embedding (i.e. would be published) must pass it; others pass through (never published)."""
    from policy.filters import EdgeContext

    def check(obs):
        if obs.embedding is None:
            return obs
        return obs if chain(EdgeContext(obs.zone, obs.quality, obs.box)).allow else None

    return check


def track_logger(f: IO[str]):
    """Observation filter that logs every tracked face to ``f`` and passes it on: one JSON line each with camera
    ``c``, frame index ``i``, capture time ``t``, track id ``k`` and box ``b`` (``paxsim.accuracy.read_track_log``).
    The video edge adds a line ``{c, i, frame: true}`` after each analysed frame's observations.
    It links a published sighting to its video frame, and so to the ground truth; the tracks give IDF1."""

    def record(obs):
        f.write(json.dumps({"c": obs.camera_id, "i": obs.frame_index, "t": obs.captured_at, "k": obs.track_id, "b": list(obs.box)}) + "\n")
        return obs

    return record


async def run_video_edge(
    settings: Settings,
    stop: asyncio.Event,
    cameras: list,
    duration_s: float | None = None,
    workers: int | None = None,
    filters: list | None = None,
    track_log: Path | None = None,
) -> int:
    """Run real-video cameras (``edge.camera.CameraConfig`` list) in this process and publish.

    Cameras in a biometric zone publish one Sighting per track embedding (birth, then clearly better
    views) after the edge policy chain; the others compute no embedding at all and publish ZoneCount
    (tracks newly seen per window). A camera whose source fails stops alone. Returns sightings offered.

    The policy is hot-reloaded while the cameras run (``rt.background``): the edge chain and sealing follow
    the file at once. Which cameras compute embeddings at all is fixed at start: a zone made biometric
    later needs a restart, a zone made non-biometric is withheld by the chain from the next observation.
    ``track_log``: append every tracked face to this local file (:func:`track_logger`; for scoring a run
    against ground truth, never published).
    """
    from edge.camera import Camera, observation_to_sighting
    from edge.vision.pool import VisionPool

    rt = open_policy(settings)
    biometric = biometric_zones(rt)
    gate_quality = 0.0
    if filters is None:
        filters = [policy_filter(rt.edge_chain())]
        gate_quality = rt.holder.current.quality.min_quality  # views below the gate are never embedded (they'd be dropped)
    log_file = track_log.open("a", buffering=1) if track_log is not None else None
    chain_filters = [track_logger(log_file), *filters] if log_file is not None else filters
    producer = await start_producer(settings)
    pub = Publisher(producer)
    sender = asyncio.create_task(pub.run())
    pool = VisionPool(workers)
    nonce = os.urandom(4).hex()
    offered = 0
    window: Tally[str] = Tally()
    cams: list[Camera] = []
    for cfg in cameras:
        if cfg.zone not in biometric:
            cfg = cfg.model_copy(update={"embed": False})
        if gate_quality > cfg.tracker.min_quality:
            cfg = cfg.model_copy(update={"tracker": cfg.tracker.model_copy(update={"min_quality": gate_quality})})
        cams.append(Camera(cfg, pool, chain_filters))
    by_id = {c.config.camera_id: c for c in cams}

    async def pump(cam: Camera) -> None:
        nonlocal offered
        cid = cam.config.camera_id
        count_only = cam.config.zone not in biometric
        async for result in cam.results():
            if log_file is not None:  # which frames were analysed (a frame with no face has no observation line)
                log_file.write(json.dumps({"c": cid, "i": result.frame_index, "frame": True}) + "\n")
            if count_only:
                window[cid] += result.new_tracks
                COUNT_ONLY.labels(cid).inc(result.new_tracks)
                continue
            for obs in result.faces:
                if obs.embedding is None:
                    continue
                offered += 1
                if offer_sighting(pub, rt, observation_to_sighting(obs, f"{cid}-{nonce}-{offered}")):
                    cam.metrics.observe_publish_lag(obs.captured_at)
        log.info("camera finished", extra={"camera": cid, **cam.status()})

    window_start = time.time()

    def flush_counts() -> None:
        nonlocal window_start
        now = time.time()
        for cid, cam in by_id.items():
            if cam.config.zone in biometric:
                continue
            zc = ZoneCount(camera_id=cid, zone=cam.config.zone, window_start=window_start, window_end=now, faces=window[cid])
            pub.offer(t.ZONE_COUNTS.name, encode(zc), cid.encode())
        window.clear()
        window_start = now

    async def counts() -> None:
        while True:
            await asyncio.sleep(COUNT_WINDOW_S)
            flush_counts()

    async def stopper() -> None:
        # ``duration_s`` is of video, counted from the first frame read: a slow start (models and a synthetic
        # world loading on a busy host) must not use it up before a camera delivered anything
        deadline = time.monotonic() + START_TIMEOUT_S
        while duration_s is not None and not stop.is_set() and time.monotonic() < deadline:
            if any(c.status().get("read", 0) for c in cams):
                break
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(stop.wait(), timeout=duration_s)
        except TimeoutError:
            pass
        for cam in cams:
            cam.stop()

    log.info("video edge running", extra={"cameras": len(cams), "workers": pool.workers})
    background = asyncio.create_task(rt.background(stop))  # hot reload, key shredding, audit mirror
    stop_task = asyncio.create_task(stopper())
    count_task = asyncio.create_task(counts())
    try:
        await pool.warm(embed=any(c.config.embed for c in cams))
        await asyncio.gather(*(pump(c) for c in cams))
    finally:
        stop_task.cancel()
        count_task.cancel()
        await asyncio.gather(stop_task, count_task, return_exceptions=True)
        flush_counts()
        pool.close()
        await pub.close()
        await sender
        await producer.stop()
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        rt.close()
        if log_file is not None:
            log_file.close()
    log.info("video edge finished", extra={"offered": offered})
    return offered
