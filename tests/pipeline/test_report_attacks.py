"""The load report's "privacy attack surface" section: the red team's table, failures marked, in HTML and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from paxsim.load import LoadPlan, LoadResult
from paxsim.report import write_report


def test_report_has_the_red_team_table_with_failures_marked(tmp_path: Path):
    attacks = [
        {"attack": "plaintext sighting", "defence": "dead-lettered", "observed": "dead-letter: plaintext", "passed": True},
        {"attack": "forged erasure <x>", "defence": "refused", "observed": "erased pax-1", "passed": False},
    ]
    run = LoadResult("load", LoadPlan(cameras=1, start_rate=10, factor=2, steps=1, step_s=5))
    out = tmp_path / "r.html"
    doc = json.loads(write_report([run], out, None, attacks).read_text())
    assert doc["redteam"] == attacks
    page = out.read_text()
    assert "privacy attack surface" in page and "paxsim redteam: 1 passed, 1 failed" in page
    assert "<b>FAIL</b>" in page and "forged erasure &lt;x&gt;" in page  # escaped, never raw HTML
    assert "privacy attack surface" not in (write_report([run], tmp_path / "plain.html") and (tmp_path / "plain.html").read_text())


def _step(matched: float, refused: int, p99: float, leaks: int):
    from paxsim.load import StepResult
    from paxsim.summary import RunSummary

    summary = {
        "produced": 100, "admitted": 90, "decided": 90, "matched": matched, "unknown": 5, "refused": refused, "latency_p50_ms": 40.0,
        "latency_p99_ms": p99, "edge_dropped": 0, "deadletters": 0, "duplicate_decisions": 0, "gate_dropped_by_rule": {},
        "refused_by_rule": {"post_match:consent": refused}, "accuracy": {"leaks": leaks},
        "audit_scan": {"expired_readable": 0, "non_consented": leaks, "audit_gaps": 0}, "processes": {"matcher": {"cpu_s": 2.0}},
    }  # fmt: skip
    return StepResult(offered_rate=50.0, traffic_s=10.0, summary=RunSummary(**summary))


def test_compare_writes_a_policy_diff_and_figures_side_by_side_with_their_meaning(tmp_path: Path):
    from paxsim.load import compare_runs

    strict, lean = tmp_path / "strict.yaml", tmp_path / "lean.yaml"
    strict.write_text("label: strict\nretention: {sightings_s: 60}\n")
    lean.write_text("label: lean\nretention: {sightings_s: 600}\n")
    plan = LoadPlan(cameras=1, start_rate=50, factor=2, steps=1, step_s=10)
    a, b = LoadResult("strict", plan, [_step(40, 30, 80.0, 0)]), LoadResult("lean", plan, [_step(60, 10, 95.5, 2)])
    cmp = compare_runs(a, b, strict, lean)
    assert "-retention: {sightings_s: 60}" in cmp["policy_diff"] and "+retention: {sightings_s: 600}" in cmp["policy_diff"]
    rows = {r["figure"]: r for r in cmp["side_by_side"][0]["rows"]}
    assert rows["identified/s (matched)"]["b_minus_a"] == 2.0 and rows["identified/s (matched)"]["meaning"] == "B identifies more people"
    assert rows["refused at the gate or after matching, /s"]["meaning"] == "B's policy refuses less"
    assert rows["identifications of non-consented people"]["meaning"] == "B LEAKS MORE"
    assert rows["CPU seconds, all stages"]["meaning"] == "no change"
    out = tmp_path / "cmp.html"
    write_report([a, b], out, {"comparison": cmp})
    page = out.read_text()
    assert "policy diff" in page and "+retention: {sightings_s: 600}" in page and "B identifies more people" in page
    assert '"side_by_side"' not in page  # a table a person reads, not the raw JSON
