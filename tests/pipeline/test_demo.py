"""`paxsim demo` as a user runs it: exits 0 with matches, leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil


def _ours(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])) or marker in (p.info["cwd"] or ""):
                found.append(p)
            elif marker in p.environ().get("PAXSIM_CONFIG", ""):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_demo_runs_and_leaves_no_process(tmp_path: Path):
    env = {**os.environ, "PAXSIM__STATE_DIR": str(tmp_path / "var"), "PAXSIM__SCENARIO__TRAVELLERS": "60"}
    proc = subprocess.run(
        [sys.executable, "-m", "paxsim.cli", "demo", "--duration", "4", "--cameras", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "paxsim demo summary" in proc.stdout
    summary = json.loads((tmp_path / "var" / "demo" / "summary.json").read_text())
    assert summary["matched"] > 0 and summary["duplicate_decisions"] == 0
    assert summary["decided"] == summary["admitted"]
    assert summary["audit_scan"] == {"expired_readable": 0, "non_consented": 0, "audit_gaps": 0}
    assert {"live:metrics", "live:dashboard", "store:gallery.npz", "store:matcher-snapshots", "store:audit-chains"} <= set(
        summary["audit_scan_sources"]
    ), summary["audit_scan_sources"]
    live = summary["live_camera"]  # a rendered camera through the real edge, scored against the renderer's truth
    assert live["camera"] == "cam-security-1" and live["frames_analysed"] > 0 and live["analysed_per_s"] > 0
    assert "live camera cam-security-1" in proc.stdout
    assert not _ours(str(tmp_path)), "a stage or broker process outlived the demo"
