"""The Kafka ACL plan (broker/acls.py): each stage's principal gets the topics its code uses and no more, and
``paxsim topics acls`` prints exactly that plan for the init step."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from broker import topics as t
from broker.acls import ACCESS, acl_arguments

ROOT = Path(__file__).resolve().parents[1]
# the modules each stage's process runs that name topics (the erasure worker and dead letters are shared)
MODULES = {
    "edge": ["edge/service.py", "policy/mirror.py"],
    "gate": ["policy/gate.py", "policy/mirror.py", "broker/stream.py", "policy/erasure.py"],  # the consent outbox
    "matcher": ["matcher/service.py", "policy/mirror.py", "broker/stream.py", "policy/erasure.py"],
    "dashboard": ["dashboard/feed.py", "dashboard/services.py", "policy/mirror.py"],
}
BY_CONST = {name: getattr(t, name) for name in dir(t) if isinstance(getattr(t, name), t.Topic)}


def named_topics(paths: list[str]) -> set[str]:
    found = set()
    for p in paths:
        for const in re.findall(r"\bt\.([A-Z_]+)\b", (ROOT / p).read_text()):
            if const in BY_CONST:
                found.add(BY_CONST[const].name)
    return found


def test_every_topic_a_stage_names_is_in_its_access_and_the_dangerous_writes_are_narrow():
    for stage, paths in MODULES.items():
        access = ACCESS[stage]
        allowed = {x.name for x in (*access.reads, *access.writes)}
        missing = named_topics(paths) - allowed
        assert not missing, f"{stage} uses {missing} without an ACL for it"
    writers = {topic.name: {s for s, a in ACCESS.items() if topic in a.writes} for topic in t.ALL}
    readers = {topic.name: {s for s, a in ACCESS.items() if topic in a.reads} - {"auditor"} for topic in t.ALL}
    assert writers[t.ADMITTED.name] == {"gate"}  # nothing skips the gate
    assert writers[t.ERASURES.name] == {"gate", "dashboard"}  # the issuers (their requests are signed, too)
    assert writers[t.MATCHES.name] == writers[t.TRACKS.name] == {"matcher"}
    assert not ACCESS["edge"].reads and not ACCESS["auditor"].writes
    assert ACCESS["auditor"].reads == t.ALL
    for topic in t.ALL:
        assert writers[topic.name], f"nobody may write {topic.name}"
        assert readers[topic.name] or topic in (t.AUDIT, t.DEADLETTER), f"no stage reads {topic.name}"


def test_consumer_groups_in_the_plan_are_the_ones_the_stages_join():
    from matcher.service import GROUP as MATCHER_GROUP
    from policy.gate import GROUP as GATE_GROUP

    assert ACCESS["gate"].groups == (GATE_GROUP,) and ACCESS["matcher"].groups == (MATCHER_GROUP,)


def test_the_init_step_prints_one_kafka_acls_command_per_grant():
    r = subprocess.run(
        [sys.executable, "-m", "paxsim.cli", "topics", "acls", "--user-prefix", "px-"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    lines = [shlex.split(line) for line in r.stdout.splitlines()]
    plan = acl_arguments({s: f"User:px-{s}" for s in ACCESS})
    assert [args[1:] for args in lines] == plan and all(args[0] == "kafka-acls.sh" for args in lines)
    edge = [args for args in lines if "User:px-edge" in args]
    assert edge and all("Write" in args for args in edge) and not any("Read" in args for args in edge)
