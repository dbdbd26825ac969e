"""Per-purpose retention on the output topics, on the real broker with the real stages: under a policy whose
purposes keep data 10 s, every subject reference on the matches, tracks and alerts topics names its subject while
its purpose allows, and nobody once that purpose's TTL (plus at most one key epoch) has passed. The broker
deletes nothing (Tansu keeps every record); the key holder destroying the purpose's epoch key is what does it.
The audit scan, which resolves every pseudonym it can, finds no reference readable past its retention."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from broker import topics as t
from broker.messages import Alert, Match, TrackUpdate, decode
from broker.reader import read_all
from core.config import Settings
from paxsim.infra import enrol_scenario
from policy.crypto import HttpKeySource
from policy.crypto.outputs import OutputKeys
from policy.keyd import spawn_keyd
from policy.policyfile import DEFAULT_POLICY_PATH, load_policy
from policy.scan import run_scan
from tests.pipeline.test_pipeline import run_to_end, small

TTL_S = 10.0
EPOCH_S = 1.0


def _short_policy(tmp_path: Path) -> Path:
    doc = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    for rule in doc["purposes"].values():
        rule["retention_s"] = TTL_S
    doc["retention"]["epoch_s"] = EPOCH_S
    path = tmp_path / "short-purposes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _outputs(cs: Settings) -> list[Match | TrackUpdate | Alert]:
    out: list[Match | TrackUpdate | Alert] = []
    for name, kind in ((t.MATCHES.name, Match), (t.TRACKS.name, TrackUpdate), (t.ALERTS.name, Alert)):
        out += [decode(r.value, kind) for r in asyncio.run(read_all(cs, name))]
    return out


def _at(r: Match | TrackUpdate | Alert) -> float:
    return r.at if isinstance(r, Alert) else r.captured_at


def test_subject_references_name_nobody_after_their_purposes_retention(client_settings: Settings, broker, tmp_path: Path):
    policy_path = _short_policy(tmp_path)
    cs = small(client_settings)
    cs = cs.model_copy(update={"policy": cs.policy.model_copy(update={"file": str(policy_path)})})
    keys = spawn_keyd(policy_path)
    try:
        admin = HttpKeySource(keys.url, keys.token)
        enrol_scenario(cs, 3.0)
        run_to_end(cs, broker, keys, 3.0)
        records = _outputs(cs)
        named = [r for r in records if r.sealed]
        assert named, "nothing identified: no subject reference to watch"
        assert not any(r.subject_id for r in records), "a subject reference in clear on an output topic"
        outputs = OutputKeys(admin, background=False)
        young = [r for r in named if _at(r) > time.time() - (TTL_S - EPOCH_S)]  # surely within their retention
        assert young, "every reference is already near its TTL: the run was too slow to watch one live"
        fresh = [outputs.open(r) for r in young]
        assert all(ok and r.subject_id and r.subject_id.startswith("ps-") for r, ok in fresh), "a live reference did not open"
        policy = load_policy(policy_path)
        early = asyncio.run(run_scan(cs, policy, admin))
        assert early.count("expired-readable") == 0, [str(f) for f in early.findings]

        latest = max(_at(r) for r in named)
        time.sleep(max(0.0, latest + TTL_S + 2 * EPOCH_S + 0.5 - time.time()))  # past the TTL and the epoch's end
        outputs = OutputKeys(admin, background=False)  # a reader that starts now: only what the key holder still has
        late = [outputs.open(r) for r in named]
        readable = [r for r, ok in late if ok]
        assert not readable, f"{len(readable)} of {len(named)} references still name somebody after their purpose's retention"
        assert all(r.subject_id is None or r.subject_id == "" for r, _ok in late)
        report = asyncio.run(run_scan(cs, policy, admin))
        assert report.count("expired-readable") == 0, [str(f) for f in report.findings]
        assert report.unlinkable >= len(named), (report.unlinkable, len(named))
    finally:
        keys.stop()
