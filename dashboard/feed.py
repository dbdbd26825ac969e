"""The dashboard's view of the stream: reads matches, track updates and zone counts into aggregates.

Only aggregates are kept (counts by decision and zone, zone-to-zone flows); no embeddings ever reach here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from broker import topics as t
from broker.clients import start_consumer
from broker.messages import Match, MessageError, TrackUpdate, ZoneCount, decode
from paxsim.config import Settings

log = logging.getLogger("paxsim.dashboard")


@dataclass
class StreamView:
    decisions: Counter[str] = field(default_factory=Counter)
    refused_by_rule: Counter[str] = field(default_factory=Counter)
    matches_by_zone: Counter[str] = field(default_factory=Counter)
    zone_faces: Counter[str] = field(default_factory=Counter)
    flows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    track_events: set[str] = field(default_factory=set)
    connected: bool = False

    def apply(self, topic: str, value: bytes) -> None:
        if topic == t.MATCHES.name:
            m = decode(value, Match)
            self.decisions[m.decision] += 1
            if m.decision == "match":
                self.matches_by_zone[m.zone] += 1
            elif m.rule:
                self.refused_by_rule[m.rule] += 1
        elif topic == t.TRACKS.name:
            tu = decode(value, TrackUpdate)
            if tu.event_id in self.track_events:
                return  # at-least-once topic: idempotent by event id
            self.track_events.add(tu.event_id)
            if tu.prev_zone and tu.prev_zone != tu.zone:
                self.flows[tu.prev_zone][tu.zone] += 1
        elif topic == t.ZONE_COUNTS.name:
            zc = decode(value, ZoneCount)
            self.zone_faces[zc.zone] += zc.faces

    def summary(self) -> dict:
        return {
            "decisions": dict(self.decisions),
            "refused_by_rule": dict(self.refused_by_rule),
            "matches_by_zone": dict(self.matches_by_zone),
            "count_only_faces_by_zone": dict(self.zone_faces),
            "zone_flows": {a: dict(b) for a, b in self.flows.items()},
        }


async def follow(settings: Settings, view: StreamView, stop: asyncio.Event) -> None:
    """Read the output topics from the beginning into ``view`` until ``stop``."""
    consumer = await start_consumer(settings, group_id=None)
    try:
        await consumer.topics()  # refreshes metadata
        names = (t.MATCHES.name, t.TRACKS.name, t.ZONE_COUNTS.name)
        tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        view.connected = True
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, recs in batch.items():
                for rec in recs:
                    try:
                        view.apply(tp.topic, rec.value or b"")
                    except MessageError as exc:
                        log.warning("skipping undecodable record", extra={"topic": tp.topic, "offset": rec.offset, "error": str(exc)})
    finally:
        view.connected = False
        await consumer.stop()
