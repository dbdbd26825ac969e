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
