"""Headless Debian chromium (driven by playwright) watches the live dashboard during a short real pipeline:
every panel renders live data that keeps updating; an erasure shows up in its panel; a screenshot is saved.

Set PAXSIM_UPDATE_SCREENSHOT=1 to also write the screenshot to docs/img/dashboard.png (the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx

from core.paths import state_dir
from policy.consent import ConsentRegistry, registry_path
from policy.crypto import HttpKeySource, SubjectVault
from tests.dashboard.conftest import ADMIN, AUDITOR, OPERATOR, need_binary, start_live_pipeline, wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
PLOTS = ["plot-throughput", "plot-latency", "plot-lag", "plot-consent", "plot-rules", "plot-map", "plot-retention"]


# what each panel needs from the pushed state (window.paxsim.last) to count as showing live data
LIVE_PANELS = {
    "broker connected": "s.broker_connected",
    "match decisions": "(s.decisions.match || 0) > 0",
    "matcher rate": "st.matcher && st.matcher.events_per_s > 0",
    "edge rate": "st.edge && st.edge.events_per_s > 0",
    "matcher p99": "st.matcher && st.matcher.p99_ms !== null",
    "gate lag": "st.gate && st.gate.lag !== null",
    "rules": "s.rules.length > 0",
    "a live camera": "s.cameras.some(c => c.status === 'live')",
    "a live camera row": "document.querySelectorAll('#cameras td.live').length >= 1",
}


def wait_seen(page, panels: dict[str, str], timeout_s: float) -> None:  # noqa: ANN001
    """Poll the page's last pushed state until every condition in ``panels`` has held at least once."""
    checks = ", ".join(f"{json.dumps(k)}: !!({v})" for k, v in panels.items())
    probe = f"""() => {{
        const s = window.paxsim && window.paxsim.last;
        if (!s) return null;
        const st = Object.fromEntries(s.stages.map(x => [x.stage, x]));
        return {{{checks}}};
    }}"""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = page.evaluate(probe) or {}
        seen |= {k for k, ok in now.items() if ok}
        if seen >= panels.keys():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"never showed live data within {timeout_s:.0f} s: {sorted(panels.keys() - seen)}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_live_dashboard_in_chromium(settings, client_settings, broker, keys, tmp_path: Path, monkeypatch):
    need_binary(CHROMIUM)
    from playwright.sync_api import sync_playwright

    live = start_live_pipeline(client_settings, broker.bootstrap, 14.0, monkeypatch, keys)
    url = live.dashboard_url
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1600, "height": 1250})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/", wait_until="domcontentloaded")

            # live data reaches every panel: decisions, stage rates from the scraped /metrics, lag, rules, cameras.
            # Each must show at some update while the 14 s of traffic flow (not all in one: on a loaded host the
            # edge can finish before the gate's lag is first scraped); a timeout names the panels that never did.
            wait_seen(page, LIVE_PANELS, 40)
            for plot in PLOTS:
                n = page.evaluate(f"() => (document.getElementById('{plot}').data || []).length")
                assert n > 0, f"{plot} has no trace"
            page.wait_for_function("() => document.querySelectorAll('#cameras tbody tr').length >= 6", timeout=10_000)
            assert page.locator("#st-broker").inner_text() == "broker connected"
            # the page keeps updating (server-sent events), it was not a one-off render
            first = int(page.get_attribute("#panel-throughput", "data-updates") or 0)
            page.wait_for_function(f"() => +document.getElementById('panel-throughput').dataset.updates >= {first + 2}", timeout=10_000)
            # the consent panel draws its three outcomes from the matches topic, and matched faces are among them
            # (whether an unenrolled traveller passes in these seconds is the scenario's business: test_pipeline
            # checks unknown decisions against the ground truth)
            assert page.evaluate(
                "() => { const d = document.getElementById('plot-consent').data; return d.length === 3 && d[0].y.some(v => v > 0); }"
            )

            # identity data is refused without the right role, then an erasure goes through the erasure topic
            with httpx.Client(base_url=url, timeout=5) as api:
                assert api.get("/api/trajectories").status_code == 401
                assert api.get("/api/trajectories", headers=bearer(AUDITOR)).status_code == 403
                subjects = wait_for("a stored trajectory", lambda: api.get("/api/trajectories", headers=bearer(OPERATOR)).json(), 15)
                victim = subjects[0]["subject_id"]
                assert victim.startswith("ps-"), "trajectories name subjects by pseudonym"
                # withdraw the way `paxsim consent withdraw` does: the registry queues it, the dashboard publishes it
                # (with the pseudonym attached while the key exists), reads it back and deletes the subject's points
                reg = ConsentRegistry.open(registry_path(state_dir(live.settings)))
                real = SubjectVault(HttpKeySource(keys.url, keys.token)).resolve({victim}, reg.subjects())[victim]
                req = reg.withdraw(real)
                reg.close()
                assert req is not None
                wait_for(
                    "the erasure applied",
                    lambda: any(
                        e["request_id"] == req.request_id and e["published_at"] and e["applied_in_dashboard_s"] is not None
                        for e in api.get("/api/erasures", headers=bearer(ADMIN)).json()
                    ),
                    15,
                )
                left = api.get(f"/api/trajectories/{victim}", headers=bearer(OPERATOR))
                assert left.status_code == 404 or all(v["captured_at"] > req.requested_at for v in left.json())
            page.wait_for_function("() => window.paxsim.last.erasure.applied >= 1", timeout=10_000)
            assert "p50" in page.locator("#erasure-stat").inner_text()
            assert victim not in page.content()  # the page never shows an identity

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000
            if os.environ.get("PAXSIM_UPDATE_SCREENSHOT"):
                README_SHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, README_SHOT)
            assert not errors, errors
            browser.close()
    finally:
        live.stack.stop()
