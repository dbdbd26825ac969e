"""A Kafka client nobody here wrote reads the embedded broker: confluent-kafka (librdkafka) lists the topics
and reads records that msgpack decodes and broker/schema.json validates, with no paxsim code in that process
(deploy/read_topic.py). Debian's kcat 1.7.1 (librdkafka 2.0.2) cannot parse Tansu's ApiVersions reply; this
is what the README offers instead."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from broker import topics as t
from broker.clients import start_producer
from broker.messages import Match, Sighting, embedding_to_bytes, encode
from core.config import Settings

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "read_topic.py"


def _read(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), bootstrap, *args], capture_output=True, text=True, timeout=60)


def test_confluent_kafka_lists_reads_and_validates_records_with_only_the_schema(client_settings: Settings):
    boot = client_settings.broker.bootstrap
    assert boot is not None
    now = 1_800_000_000.0
    sighting = Sighting(
        event_id="e-1",
        camera_id="cam-a",
        zone="security",
        captured_at=now,
        track_id=3,
        box=(10, 20, 64, 64),
        quality=0.8,
        embedding=embedding_to_bytes(np.linspace(-1, 1, 128, dtype=np.float32)),
    )
    match = Match(
        event_id="e-1",
        camera_id="cam-a",
        zone="security",
        purpose="boarding",
        captured_at=now,
        matched_at=now + 0.05,
        decision="match",
        subject_id="ps-0123456789abcdef01234567",
        distance=0.31,
    )

    async def produce() -> None:
        p = await start_producer(client_settings)
        try:
            await p.send_and_wait(t.SIGHTINGS.name, encode(sighting), key=b"cam-a")
            await p.send_and_wait(t.MATCHES.name, encode(match), key=b"cam-a")
            await p.send_and_wait(t.MATCHES.name, b"\xc1 not msgpack", key=b"poison")  # what a hostile producer writes
        finally:
            await p.stop()

    asyncio.run(produce())
    listed = _read(boot, "--list")
    assert listed.returncode == 0, listed.stderr
    assert {ln.split("\t")[0] for ln in listed.stdout.splitlines()} >= {tp.name for tp in t.ALL}

    r = _read(boot, t.SIGHTINGS.name)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert row["key"] == "cam-a" and row["errors"] == []
    assert row["record"]["type"] == "sighting.v1" and row["record"]["embedding"] == "<512 bytes>"
    assert row["record"]["box"] == [10, 20, 64, 64]
    assert "1 records, 1 valid" in r.stderr

    r = _read(boot, t.MATCHES.name)
    assert r.returncode == 1  # the poison record is reported, not skipped
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    good = [x for x in rows if not x["errors"]]
    assert [x["record"]["decision"] for x in good] == ["match"] and good[0]["record"]["distance"] == 0.31
    assert [x["key"] for x in rows if x["errors"]] == ["poison"]
    assert "2 records, 1 valid" in r.stderr
