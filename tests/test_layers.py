"""The import-linter layer contract (pyproject.toml) is real: a foundation module that imports the CLI breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("paxsim", "scenario", "dashboard", "matcher", "edge", "policy", "broker", "core")


def _python_only(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if not (Path(directory, n).is_dir() or n.endswith(".py")) or n == "__pycache__"}


def test_lint_imports_fails_on_a_planted_upward_import(tmp_path: Path):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=_python_only)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    paths = tmp_path / "core" / "paths.py"
    paths.write_text(paths.read_text() + "\nimport paxsim.cli  # planted: the foundations importing the top\n")
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy, ahead of the editable install
    r = subprocess.run([str(exe), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BROKEN" in r.stdout and "core.paths -> paxsim.cli" in r.stdout, r.stdout
