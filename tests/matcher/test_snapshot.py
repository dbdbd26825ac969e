"""Crash safety at library level: a worker applies a log of sightings and snapshots index + trajectories +
offset together; it is killed with SIGKILL mid-run; recovery from the snapshot plus replay (with redelivered
duplicates) ends with every sighting applied exactly once."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from matcher import snapshot
from matcher.index import GalleryIndex
from matcher.trajectory import TrajectoryStore, ZoneMap

ZONES = ["checkin", "security", "egate", "gate"]
N_EVENTS = 4000

WORKER = r"""
import sys, numpy as np
from matcher import snapshot
from matcher.index import GalleryIndex
from matcher.trajectory import TrajectoryStore, ZoneMap
from tests.matcher.test_snapshot import events, zone_map, gallery
path = sys.argv[1]
idx, store = gallery(), TrajectoryStore(zone_map())
ev = events()
for off, (eid, q, zone, t) in enumerate(ev):
    hit = idx.search(q)[0].best
    store.apply(eid, hit.subject_id, "cam", zone, t)
    if off % 50 == 49:
        snapshot.write(path, snapshot.Snapshot(idx.to_bytes(), store.to_bytes(), {("admitted", 0): off + 1}))
        print(off + 1, flush=True)
"""


def zone_map():
    return ZoneMap({(a, b): 10.0 for a in ZONES for b in ZONES if a < b})


def gallery():
    rng = np.random.default_rng(0)
    return GalleryIndex.build([f"s{i}" for i in range(20)], rng.normal(0, 0.05, (20, 128)).astype(np.float32))


def events():
    rng = np.random.default_rng(1)
    centres = np.random.default_rng(0).normal(0, 0.05, (20, 128)).astype(np.float32)
    out = []
    for k in range(N_EVENTS):
        s = int(rng.integers(20))
        out.append((f"e{k}", centres[s] + rng.normal(0, 0.01, 128).astype(np.float32), ZONES[(k // 200) % 4], float(k)))
    return out


def test_snapshot_round_trip_and_corruption(tmp_path):
    p = tmp_path / "snap.bin"
    assert snapshot.read(p) is None
    snap = snapshot.Snapshot(b"idx", b"traj", {("paxsim.sightings.admitted.v1", 3): 42}, {"v": "1"})
    snapshot.write(p, snap)
    assert snapshot.read(p) == snap
    data = bytearray(p.read_bytes())
    p.write_bytes(bytes(data[:-3]))
    with pytest.raises(snapshot.SnapshotError):
        snapshot.read(p)


def test_kill_9_then_recover_applies_every_sighting_once(tmp_path):
    path = tmp_path / "matcher.snap"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    # let it write a few snapshots, then kill it without warning
    for _ in range(8):
        line = proc.stdout.readline()
        assert line, "worker died before snapshotting"
    time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    snap = snapshot.read(path)  # never torn: the old or the new one
    assert snap is not None
    resume = snap.offsets[("admitted", 0)]
    assert 400 <= resume < N_EVENTS
    idx = GalleryIndex.from_bytes(snap.index)
    store = TrajectoryStore(zone_map())
    store.restore(snap.trajectories)
    assert store.sightings() == resume
    ev = events()
    redelivered = ev[resume - 30 : resume]  # at-least-once delivery hands back some applied events
    for eid, q, zone, t in redelivered + ev[resume:]:
        hit = idx.search(q)[0].best
        store.apply(eid, hit.subject_id, "cam", zone, t)
    assert store.sightings() == N_EVENTS  # nothing lost
    assert store.duplicates == 30  # nothing applied twice
    # the same answer as an uninterrupted run
    clean = TrajectoryStore(zone_map())
    g = gallery()
    for eid, q, zone, t in ev:
        clean.apply(eid, g.search(q)[0].best.subject_id, "cam", zone, t)
    assert {s: clean.visits(s) for s in clean.subjects()} == {s: store.visits(s) for s in store.subjects()}
