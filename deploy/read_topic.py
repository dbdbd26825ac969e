"""Read a paxsim topic with no paxsim code: confluent-kafka (librdkafka), msgpack and broker/schema.json.

    pip install confluent-kafka msgpack jsonschema-rs
    python deploy/read_topic.py 127.0.0.1:40851 --list
    python deploy/read_topic.py 127.0.0.1:40851 paxsim.matches.v1 [--schema broker/schema.json] [--max 100]

Prints one JSON object per record (partition, offset, key, the decoded fields; bytes fields as their length)
and, on stderr, how many records there were and whether each validated against the schema definition its
``type`` tag names. Exit 1 when a record does not decode or validate. It assigns the partitions itself from
the first offset (no consumer group), as an auditor reading the log would.

Works against any Kafka-protocol broker, the embedded Tansu included (librdkafka 2.16 via confluent-kafka;
Debian's kcat 1.7.1 on librdkafka 2.0.2 cannot parse Tansu's ApiVersions reply).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import jsonschema_rs
import msgpack
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

DEFAULT_SCHEMA = Path(__file__).resolve().parents[1] / "broker" / "schema.json"


def validators(schema: dict) -> dict[str, object]:
    """type tag (e.g. 'match.v1') -> a validator of that message's definition."""
    out = {}
    for name, d in schema["$defs"].items():
        tag = d.get("properties", {}).get("type", {}).get("enum", [None])[0]
        if tag:
            out[tag] = jsonschema_rs.validator_for({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
    return out


def as_json(value):
    """msgpack values as the schema describes them: bytes are base64 strings."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def shown(value):
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bootstrap")
    ap.add_argument("topic", nargs="?")
    ap.add_argument("--list", action="store_true", help="list the topics and their partitions")
    ap.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    ap.add_argument("--max", type=int, default=0, help="stop after this many records (0: read to the end)")
    ap.add_argument("--idle", type=float, default=3.0, help="the end: no record for this many seconds")
    args = ap.parse_args()
    conf = {"bootstrap.servers": args.bootstrap}
    if args.list or not args.topic:
        md = AdminClient(conf).list_topics(timeout=15)
        for name in sorted(md.topics):
            print(f"{name}\t{len(md.topics[name].partitions)} partitions")
        return 0
    checks = validators(json.loads(args.schema.read_text()))
    consumer = Consumer({**conf, "group.id": "read-topic", "enable.auto.commit": False})
    md = consumer.list_topics(args.topic, timeout=15)
    if args.topic not in md.topics or md.topics[args.topic].error is not None:
        print(f"no topic {args.topic!r}", file=sys.stderr)
        return 2
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in md.topics[args.topic].partitions])
    n = bad = 0
    last = time.monotonic()
    try:
        while time.monotonic() - last < args.idle and not (args.max and n >= args.max):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                print(f"error: {msg.error()}", file=sys.stderr)
                continue
            last = time.monotonic()
            n += 1
            try:
                record = msgpack.unpackb(msg.value(), raw=False)
                check = checks[record["type"]]
                errors = [e.message for e in check.iter_errors(as_json(record))]  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - reported per record
                record, errors = None, [f"does not decode: {exc}"]
            bad += bool(errors)
            key = msg.key().decode(errors="replace") if msg.key() else None
            print(json.dumps({"partition": msg.partition(), "offset": msg.offset(), "key": key, "record": shown(record), "errors": errors}))
    finally:
        consumer.close()
    print(f"{n} records, {n - bad} valid against {args.schema.name}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
