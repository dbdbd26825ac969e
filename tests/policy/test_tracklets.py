"""Anonymous tracklets: off by default, no identity or biometric data kept, deleted at TTL, aggregates only."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest

from broker.messages import Match, Sighting, embedding_to_bytes
from policy.policyfile import parse_policy
from policy.tracklets import DWELL_BUCKETS_S, Tracklet, TrackletConfig, TrackletStore, config_from_policy

T0 = 1_800_000_000.0
ON = TrackletConfig(enabled=True, ttl_s=30.0)
EMB = embedding_to_bytes(np.linspace(-1, 1, 128, dtype=np.float32))


def sighting(camera: str = "cam-1", track: int = 7, zone: str = "security", at: float = T0, n: int = 0) -> Sighting:
    return Sighting(
        event_id=f"{camera}-e{n}",
        camera_id=camera,
        zone=zone,
        captured_at=at,
        track_id=track,
        box=(1, 2, 60, 60),
        quality=0.9,
        embedding=EMB,
        sealed=b"\x01" * 40,
        key_id="sightings:abcd:1",
        claimed_subject="ps-claimed",
    )


def match(s: Sighting, decision: str = "unknown", subject: str | None = None) -> Match:
    return Match(
        event_id=s.event_id,
        camera_id=s.camera_id,
        zone=s.zone,
        purpose="flow-analytics",
        captured_at=s.captured_at,
        matched_at=s.captured_at + 0.05,
        decision=decision,
        subject_id=subject,
        rule="known_face",
    )


def observe(store: TrackletStore, s: Sighting, decision: str = "unknown", now: float | None = None) -> str | None:
    return store.observe(s, match(s, decision), s.captured_at + 0.05 if now is None else now)


def test_off_by_default_and_in_the_default_policy():
    store = TrackletStore()
    assert observe(store, sighting()) is None and len(store) == 0 and store.counts.started == 0
    assert not config_from_policy(parse_policy("label: x\n")).enabled
    assert not config_from_policy({}).enabled and not config_from_policy({"unknown_faces": {"tracklets": {"enabled": "yes"}}}).enabled
    cfg = config_from_policy(parse_policy("label: x\nunknown_faces:\n  tracklets: {enabled: true, ttl_s: 15}\n"))
    assert cfg.enabled and cfg.ttl_s == 15


def test_only_non_identified_sightings_join():
    store = TrackletStore(ON)
    s = sighting()
    assert store.observe(s, match(s, "match", "ps-0123"), T0) is None
    assert store.observe(s, match(s, "verified", "ps-0123"), T0) is None
    assert len(store) == 0
    for d in ("unknown", "refused", "rejected"):
        assert observe(store, sighting(track={"unknown": 1, "refused": 2, "rejected": 3}[d]), d) is not None
    assert len(store) == 3


def test_a_tracklet_stores_no_embedding_subject_or_event_field():
    names = {f.name for f in dataclasses.fields(Tracklet)}
    assert names == {"tracklet_id", "created_at", "zone", "zone_first", "zone_last", "sightings"}
    store = TrackletStore(ON)
    s = sighting()
    tid = observe(store, s)
    (tr,) = store.snapshot()
    values = [getattr(tr, n) for n in names]
    assert not any(isinstance(v, (bytes, bytearray, memoryview)) for v in values)
    text = repr(values) + repr(store.counts.as_dict()) + repr(list(store._by_track.items()))
    for secret in ("ps-claimed", s.event_id, "sightings:abcd", "ps-0123"):
        assert secret not in text
    assert tid == tr.tracklet_id and len(tid) == 16 and "cam" not in tid and "7" != tid
    # the store keeps no reference to the sighting or to its payload
    held = gc.get_referents(*store._by_track.values(), store._by_track)
    assert not any(o is s or o is s.embedding or o is s.sealed for o in held)


def test_sightings_of_one_edge_track_share_a_random_id_and_other_tracks_or_cameras_do_not():
    store = TrackletStore(ON)
    a = observe(store, sighting(at=T0))
    assert observe(store, sighting(at=T0 + 1, n=1)) == a
    b = observe(store, sighting(track=8, at=T0 + 1, n=2))
    c = observe(store, sighting(camera="cam-2", at=T0 + 1, n=3))  # same track number on another camera
    assert len({a, b, c}) == 3
    other = TrackletStore(ON)
    assert observe(other, sighting(at=T0)) != a  # random, not derived from (camera, track)


def test_ttl_expiry_deletes_the_tracklet_and_its_key_and_a_later_sight_starts_anew():
    store = TrackletStore(ON)
    first = observe(store, sighting(at=T0), now=T0)
    observe(store, sighting(at=T0 + 20, n=1), now=T0 + 20)
    assert store.prune(T0 + 29.9) == 0 and len(store) == 1
    assert store.prune(T0 + 30.0) == 1
    assert len(store) == 0 and store._by_track == {} and store.counts.deleted == 1
    # dwell 20 s was recorded in the 20 s bucket
    assert store.counts.dwell["security"][DWELL_BUCKETS_S.index(20.0)] == 1
    again = observe(store, sighting(at=T0 + 31, n=2), now=T0 + 31)
    assert again is not None and again != first and store.counts.entries["security"] == 2


def test_ttl_runs_from_creation_even_without_a_prune():
    store = TrackletStore(ON)
    first = observe(store, sighting(at=T0), now=T0)
    second = observe(store, sighting(at=T0 + 30, n=1), now=T0 + 30)  # still seen, but the TTL is over
    assert second != first and len(store) == 1 and store.counts.deleted == 1


def test_stale_sightings_do_not_start_tracklets():
    store = TrackletStore(ON)
    assert observe(store, sighting(at=T0), now=T0 + 30) is None and len(store) == 0


def test_flow_counts_entries_transitions_and_dwell():
    store = TrackletStore(ON)
    observe(store, sighting(zone="security", at=T0), now=T0)
    observe(store, sighting(zone="security", at=T0 + 4, n=1), now=T0 + 4)
    observe(store, sighting(zone="immigration", at=T0 + 6, n=2), now=T0 + 6)
    observe(store, sighting(track=9, zone="immigration", at=T0 + 6, n=3), now=T0 + 6)
    c = store.counts
    assert c.entries == {"security": 1, "immigration": 2}
    assert c.transitions == {("security", "immigration"): 1}
    assert c.dwell["security"][DWELL_BUCKETS_S.index(5.0)] == 1  # 4 s in security, closed at the zone change
    store.prune(T0 + 100)
    assert sum(c.dwell["immigration"]) == 2 and len(store) == 0
    d = c.as_dict()
    assert d["transitions"] == {"security->immigration": 1} and d["started"] == 2 and d["deleted"] == 2


def test_disabling_by_policy_reload_deletes_everything_at_once():
    class Holder:
        current = parse_policy("label: x\nunknown_faces:\n  tracklets: {enabled: true, ttl_s: 60}\n")

    holder = Holder()
    store = TrackletStore.for_policy(holder)
    assert observe(store, sighting()) is not None and len(store) == 1
    holder.current = parse_policy("label: x\n")
    assert store.prune(T0 + 1) == 1 and len(store) == 0
    assert observe(store, sighting(n=1)) is None and len(store) == 0


def test_capacity_bound_evicts_the_oldest():
    store = TrackletStore(TrackletConfig(enabled=True, ttl_s=60, max_tracklets=2))
    observe(store, sighting(track=1), now=T0)
    observe(store, sighting(track=2), now=T0 + 1)
    observe(store, sighting(track=3), now=T0 + 2)
    assert len(store) == 2 and ("cam-1", 1) not in store._by_track


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_malformed_sightings_are_ignored_not_fatal(bad):
    store = TrackletStore(ON)
    assert store.observe(sighting(at=bad), "unknown", T0) is None
    assert store.observe(object(), "unknown", T0) is None
    assert len(store) == 0
