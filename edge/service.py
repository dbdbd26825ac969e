"""The edge agent process: cameras → sightings on the broker.

``run_virtual_edge`` drives the scenario's virtual cameras (embedding space, no pixels). The zone rule of
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
from pathlib import Path

from prometheus_client import Counter

from broker import topics as t
from broker.clients import start_producer
from broker.messages import Sighting, ZoneCount, embedding_to_bytes, encode
from edge.publisher import Publisher
from paxsim.config import Settings
from scenario.virtual import VirtualAirport

log = logging.getLogger("paxsim.edge")

SIGHTINGS = Counter("paxsim_edge_sightings_total", "Face sightings produced by cameras", ["camera"])
COUNT_ONLY = Counter("paxsim_edge_count_only_faces_total", "Faces in non-biometric zones, published as counts only", ["camera"])

TICK_S = 0.05
COUNT_WINDOW_S = 1.0


async def run_virtual_edge(settings: Settings, stop: asyncio.Event, duration_s: float, ground_truth: Path | None = None) -> int:
    """Publish the virtual airport's sightings in real time for ``duration_s``; return how many were offered."""
    airport = VirtualAirport(settings.scenario, duration_s)
    biometric = set(settings.policy.biometric_zones)
    producer = await start_producer(settings)
    pub = Publisher(producer)
    sender = asyncio.create_task(pub.run())
    nonce = os.urandom(4).hex()
    track_ids: dict[tuple[str, str], int] = {}
    window: Tally[str] = Tally()
    gt = ground_truth.open("a") if ground_truth else None
    offered = 0
    start = time.time()
    window_start, t_prev = start, 0.0
    log.info("virtual edge running", extra={"cameras": len(airport.cameras), "travellers": len(airport.travellers), "duration_s": duration_s})
    try:
        while not stop.is_set() and t_prev < duration_s:
            await asyncio.sleep(TICK_S)
            t_now = min(time.time() - start, duration_s)
            for vs in airport.sightings(t_prev, t_now):
                cam = vs.camera
                if cam.zone not in biometric:
                    window[cam.camera_id] += 1
                    COUNT_ONLY.labels(cam.camera_id).inc()
                    continue
                offered += 1
                track = track_ids.setdefault((cam.camera_id, vs.traveller_id), len(track_ids) + 1)
                s = Sighting(
                    event_id=f"{cam.camera_id}-{nonce}-{offered}",
                    camera_id=cam.camera_id,
                    zone=cam.zone,
                    captured_at=start + vs.t,
                    track_id=track,
                    box=(0, 0, 0, 0),  # virtual mode has no pixels
                    quality=1.0,
                    embedding=embedding_to_bytes(vs.embedding),
                )
                SIGHTINGS.labels(cam.camera_id).inc()
                if pub.offer(t.SIGHTINGS.name, encode(s), cam.camera_id.encode()) and gt:
                    gt.write(json.dumps({"event_id": s.event_id, "traveller_id": vs.traveller_id, "camera_id": cam.camera_id, "zone": cam.zone}) + "\n")
            t_prev = t_now
            now = time.time()
            if now - window_start >= COUNT_WINDOW_S:
                _offer_counts(pub, airport, biometric, window, window_start, now)
                window.clear()
                window_start = now
        _offer_counts(pub, airport, biometric, window, window_start, time.time())
    finally:
        await pub.close()
        await sender
        await producer.stop()
        if gt:
            gt.close()
    log.info("virtual edge finished", extra={"offered": offered})
    return offered


def _offer_counts(pub: Publisher, airport: VirtualAirport, biometric: set[str], window: Tally[str], t0: float, t1: float) -> None:
    for cam in airport.cameras:
        if cam.zone in biometric:
            continue
        zc = ZoneCount(camera_id=cam.camera_id, zone=cam.zone, window_start=t0, window_end=t1, faces=window[cam.camera_id])
        pub.offer(t.ZONE_COUNTS.name, encode(zc), cam.camera_id.encode())
