"""Who may read and write which topic: one Kafka principal per stage, and exactly the access its code needs.

The catalogue (:data:`ACCESS`) is data, like the topic catalogue, and :func:`acl_arguments` turns it into the
``kafka-acls.sh`` invocations an init step applies on a broker with an authorizer (``paxsim topics acls``
prints them). The stages are the key holder's roles (``policy.keyd.PERMISSIONS``): a stolen edge credential
can publish sightings and zone counts and read nothing; only the gate writes the admitted topic; only the
issuers (gate, dashboard) write erasure requests; the auditor reads everything and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker import topics as t


@dataclass(frozen=True, slots=True)
class Access:
    reads: tuple[t.Topic, ...] = ()
    writes: tuple[t.Topic, ...] = ()
    groups: tuple[str, ...] = ()  # consumer groups it joins (Read on the group); group-less readers need none
    describe_groups: bool = False  # may describe every consumer group (their offsets and lag), join none


ACCESS: dict[str, Access] = {
    "edge": Access(writes=(t.SIGHTINGS, t.ZONE_COUNTS, t.AUDIT)),
    "gate": Access(
        reads=(t.SIGHTINGS,), writes=(t.ADMITTED, t.DEADLETTER, t.AUDIT, t.ERASURES), groups=("paxsim-policy-gate",)
    ),  # it also publishes the consent outbox
    "matcher": Access(
        reads=(t.ADMITTED, t.ERASURES, t.MATCHES),  # matches: read back after a restart (decided-once state)
        writes=(t.MATCHES, t.TRACKS, t.ALERTS, t.AUDIT, t.DEADLETTER),
        groups=("paxsim-matcher",),
    ),
    "dashboard": Access(reads=(t.MATCHES, t.TRACKS, t.ZONE_COUNTS, t.ALERTS, t.ERASURES), writes=(t.ERASURES, t.AUDIT)),
    # paxsim audit scan: every topic from offset 0; the Kafka exporter: every group's lag
    "auditor": Access(reads=t.ALL, describe_groups=True),
}


def acl_arguments(principals: dict[str, str], bootstrap: str = "localhost:19092") -> list[list[str]]:
    """``kafka-acls.sh`` argument lists granting each stage's principal (stage → ``User:name``) its access:
    Read + Describe on what it reads, Write + Describe on what it writes, Read on its consumer groups, Describe on
    every group for a monitor."""
    out: list[list[str]] = []
    base = ["--bootstrap-server", bootstrap, "--add"]
    for stage, access in ACCESS.items():
        who = ["--allow-principal", principals[stage]]
        for topic in access.reads:
            out.append([*base, *who, "--operation", "Read", "--operation", "Describe", "--topic", topic.name])
        for topic in access.writes:
            out.append([*base, *who, "--operation", "Write", "--operation", "Describe", "--topic", topic.name])
        for group in access.groups:
            out.append([*base, *who, "--operation", "Read", "--group", group])
        if access.describe_groups:
            out.append([*base, *who, "--operation", "Describe", "--group", "*"])
    return out
