"""`paxsim load` end to end: a short ramp through the real stack, its JSON figures, and the HTML report in
headless Debian chromium (PAXSIM_UPDATE_SCREENSHOT=1 also writes docs/img/load-report.png)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.dashboard.conftest import need_binary
from tests.dashboard.test_browser import ARGS, CHROMIUM

if TYPE_CHECKING:
    from playwright.sync_api import Page

DOC_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "load-report.png"


def load_command() -> list[str]:
    return [sys.executable, "-m", "paxsim.cli", "load"]


@contextlib.contextmanager
def report_page(report: Path) -> Iterator[tuple[Page, list[str]]]:
    """The HTML report open in headless Debian chromium, and the page errors it raised."""
    need_binary(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        yield page, errors
        browser.close()


RENDER_S, TRAFFIC_S = 8, 10  # seconds of video rendered per camera; seconds of traffic replayed


def test_load_replays_rendered_videos_through_the_real_edge(tmp_path: Path):
    """Video mode: rendered scenario videos replayed as looping cameras through detector, tracker, embedder,
    sealing, gate and matcher; the population the videos show is enrolled from their manifest."""
    videos = tmp_path / "videos"
    env = {**os.environ, "PAXSIM__STATE_DIR": str(tmp_path / "var")}
    render = subprocess.run(
        [
            sys.executable,
            "-m",
            "paxsim.cli",
            "scenario",
            "render",
            "--out",
            str(videos),
            "--seconds",
            str(RENDER_S),
            "--camera",
            "cam-security-1",
            "--camera",
            "cam-immigration-1",
            "--camera",
            "cam-egate-1",
            "--camera",
            "cam-gate-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert render.returncode == 0, render.stderr[-2000:]
    report = tmp_path / "videos.html"
    proc = subprocess.run(
        [
            *load_command(),
            "--videos",
            str(videos),
            "--cameras",
            "5",
            "--steps",
            "1",
            "--duration",
            str(TRAFFIC_S),
            "--no-redteam",
            "--report",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (step,) = json.loads(report.with_suffix(".json").read_text())["runs"][0]["steps"]
    assert step["frames_processed_rate"] > 0
    # track-gated embedding: a handful of sightings per camera-minute; every one is decided exactly once
    assert step["produced_rate"] > 0 and step["decided_rate"] == step["produced_rate"]
    assert step["duplicate_decisions"] == 0 and step["deadletters"] == 0
    # scored against the rendered ground truth (the folder is a render, so it is its own --gt)
    acc = step["accuracy"]
    assert abs(acc["link"]["sightings"] - step["produced_rate"] * TRAFFIC_S) < 1  # every published sighting (rate rounded to 0.1/s)
    assert acc["link"]["no_frame"] == 0  # ... found in the evaluation edge's track log
    assert acc["link"]["linked"] > 0 and acc["events"] == acc["link"]["linked"]
    assert acc["leaks"] == 0 and step["audit_scan"] == {"expired_readable": 0, "non_consented": 0, "audit_gaps": 0}
    # the fifth camera replays the first video (sorted: cam-egate-1) from half-way (2 replicas: offsets 0 and n/2 of n frames)
    import yaml

    frames = {r["frames"] for r in json.loads((videos / "manifest.json").read_text())["rendered"]}
    assert len(frames) == 1
    half = frames.pop() // 2

    cams = {
        c["camera_id"]: c for c in yaml.safe_load((tmp_path / "var" / "load" / "load" / "step-1" / "cameras.yaml").read_text())["cameras"]
    }
    assert cams["cam-egate-1-r1"]["start_frame"] == half > 0 and cams["cam-egate-1"]["start_frame"] == 0  # staggered, same file
    assert cams["cam-egate-1-r1"]["source"] == cams["cam-egate-1"]["source"] and cams["cam-egate-1"]["source"].endswith("video.mp4")
    assert acc["cameras"] and set(acc["cameras"]) <= set(cams)
    for cam in acc["cameras"].values():
        assert 0 <= cam["idf1"] <= 1 and cam["frames"] > 0
        assert cam["precision_iou03"] is None or cam["detection"]["precision"] <= cam["precision_iou03"] <= 1
    assert sum(b["found"] for b in acc["recall_by_size"]) > 0
    assert set(acc["groups"]) == {"nationality_group", "sex", "age_band"}
    assert sum(g["events"] for g in acc["groups"]["sex"].values()) == acc["events"]

    with report_page(report) as (page, errors):
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 8", timeout=20_000)
        assert page.evaluate(
            "() => ['fig-recall-by-size', 'fig-tracking', 'fig-groups'].every(id => document.getElementById(id).data.length > 0)"
        )
        page.screenshot(path=str(tmp_path / "videos.png"), full_page=True)
        assert not errors, errors


COMPARE_SHOT = DOC_SHOT.with_name("load-compare.png")


def test_load_ramp_and_compare_answer_what_a_policy_change_does_and_the_report_renders(tmp_path: Path):
    """A 2-step ramp (the rate doubles) of two policies, ``--compare A B``: B stops matching at security and
    keeps flow data a tenth as long. Each step's figures (rates, per-process CPU and memory, zero leaks and a
    clean audit scan per step); the report says what changed in words (policy diff, retention, each figure with
    what its change means, refusals rule by rule) and in charts, all drawn in chromium;
    PAXSIM_UPDATE_SCREENSHOT=1 also writes docs/img/load-report.png and docs/img/load-compare.png."""
    from policy.policyfile import DEFAULT_POLICY_PATH

    a, b = tmp_path / "airport.yaml", tmp_path / "no-security-matching.yaml"
    text = DEFAULT_POLICY_PATH.read_text()
    a.write_text(text)
    changed = text.replace("security:    {biometric: true, purpose: flow-analytics}", "security:    {biometric: false}").replace(
        "retention_s: 1800", "retention_s: 180"
    )
    assert changed.count("biometric: false") == text.count("biometric: false") + 1 and "retention_s: 180\n" in changed
    b.write_text(changed)
    report = tmp_path / "compare.html"
    env = {**os.environ, "PAXSIM__STATE_DIR": str(tmp_path / "var"), "PAXSIM__SCENARIO__TRAVELLERS": "60"}
    args = ["--virtual", "4", "--rate", "60", "--factor", "2", "--steps", "2", "--duration", "5", "--full-ramp", "--no-redteam"]
    # the red team's own run is tests/pipeline/test_redteam.py; its table in the report: test_report_attacks.py
    proc = subprocess.run(
        [*load_command(), *args, "--report", str(report), "--compare", str(a), str(b)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(report.with_suffix(".json").read_text())
    assert len(doc["runs"]) == 2
    for n, run in enumerate(doc["runs"]):
        steps = run["steps"]
        assert len(steps) == 2 and steps[1]["offered_rate"] == 2 * steps[0]["offered_rate"]
        for st in steps:
            assert st["duplicate_decisions"] == 0 and (st["accuracy"] or {}).get("leaks", 0) == 0  # B: none to score
            assert st["audit_scan"] == {"expired_readable": 0, "non_consented": 0, "audit_gaps": 0}  # compliance per step
            assert set(st["processes"]) == {"edge", "policy", "matcher", "dashboard"}
            assert all(p["cpu_s"] > 0 and p["rss_max_mb"] > 10 for p in st["processes"].values())
        if n == 0:  # B matches nobody in these first seconds (its cameras watch security): nothing to decide
            assert all(st["decided_rate"] > 0 for st in steps) and steps[1]["produced_rate"] > steps[0]["produced_rate"]
    cmp = doc["comparison"]
    assert (cmp["baseline"], cmp["candidate"]) == ("airport", "no-security-matching")
    diff = "\n".join(cmp["policy_diff"])
    assert "-  security:    {biometric: true, purpose: flow-analytics}" in diff and "+  security:    {biometric: false}" in diff
    kept = {r["figure"]: r for r in cmp["retention"]}
    assert kept["matches and tracks kept for 'flow-analytics', s"]["b_minus_a"] == -1620
    assert kept["matches and tracks kept for 'flow-analytics', s"]["meaning"] == "B keeps data shorter"
    rows = {r["figure"]: r for r in cmp["side_by_side"][0]["rows"]}
    identified = rows["identified/s (matched)"]
    assert identified["b"] < identified["a"] and identified["meaning"] == "B identifies fewer people", identified
    # the first virtual cameras' travellers are at security in the first seconds: B matches none of them
    assert identified["b"] == 0
    consent = rows["refused by post_match:consent, /s"]  # nobody left to refuse for lack of consent either
    assert consent["a"] > 0 and consent["b"] == 0 and consent["meaning"] == "B refuses less under post_match:consent"
    leaks = rows["identifications of non-consented people"]
    assert leaks["a"] == 0 and leaks["meaning"] in ("no change", "not measured in both"), leaks

    with report_page(report) as (page, errors):
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=20_000)
        # every chart has data points (traces drawn), not an empty frame
        assert page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].every(p => p.data.length > 0)")
        whole = tmp_path / "load-report.png"
        page.screenshot(path=str(whole), full_page=True)
        assert whole.stat().st_size > 50_000
        page.wait_for_function("() => document.getElementById('fig-comparison')?.data?.length > 0", timeout=20_000)
        bars = page.evaluate("() => document.getElementById('fig-comparison').data.map(t => t.name)")
        assert any(n.startswith("A: airport") for n in bars) and any(n.startswith("B: no-security-matching") for n in bars)
        top = page.evaluate("() => document.getElementById('comparison').getBoundingClientRect().top + window.scrollY")
        height = page.evaluate("() => document.body.scrollHeight") - top
        shot = tmp_path / "load-compare.png"
        page.screenshot(path=str(shot), clip={"x": 0, "y": top - 8, "width": 1400, "height": min(height + 8, 2400)}, full_page=True)
        assert shot.stat().st_size > 50_000 and not errors, errors
    if os.environ.get("PAXSIM_UPDATE_SCREENSHOT"):
        shutil.copy(shot, COMPARE_SHOT)
        shutil.copy(whole, DOC_SHOT)


def test_rendered_videos_come_from_the_scenario_the_run_enrols_from(tmp_path: Path):
    """``paxsim load --rendered`` with a scenario file renders that scenario's cameras at the run's seed, so the
    travellers it enrols are the ones the videos show (it rendered the built-in airport and enrolled the
    file's population: every identification wrong)."""
    from rich.console import Console

    from core.config import load_settings
    from edge.camera import CameraConfig
    from paxsim.load import rendered_population, rendered_videos, video_cameras
    from scenario.world import load_world

    cctv = Path(__file__).resolve().parents[2] / "scenario" / "cctv_airport.yaml"
    env = {"PAXSIM__STATE_DIR": str(tmp_path), "PAXSIM__SCENARIO__FILE": str(cctv)}
    settings = load_settings(environ=env)
    out = rendered_videos(settings, 0.2, Console(file=open(os.devnull, "w")))  # noqa: SIM115
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario"] == "cctv-small-airport" and manifest["seed"] == settings.scenario.seed
    run = rendered_population(settings, out)
    world = load_world(run.scenario.file, seed=run.scenario.seed, travellers=run.scenario.travellers)
    shown = [(i["id"], i["identity_seed"], i["demographics"]["sex"]) for i in manifest["identities"]]
    enrolled = [(t.id, t.identity.seed, t.demographics.sex) for t in world.travellers]
    assert out.name.startswith("cctv_airport-") and shown == enrolled
    default = rendered_videos(load_settings(environ={"PAXSIM__STATE_DIR": str(tmp_path)}), 0.2, Console(file=open(os.devnull, "w")))  # noqa: SIM115
    assert json.loads((default / "manifest.json").read_text())["scenario"] != "cctv-small-airport"
    # each replayed camera scans for the smallest face its scenario camera declares (cctv: 20 px; default: the
    # edge's own default), the way an installer configures the edge per camera
    declared = {c.id: c.min_face_px for c in world.cameras if c.faces}
    cams, _ = video_cameras(out, len(declared), speed=0)
    assert declared and set(declared.values()) == {20}
    assert {c["camera_id"]: CameraConfig(**c).detector.min_face_px for c in cams} == declared
    assert all("detector" not in c for c in video_cameras(default, 2, speed=0)[0])
