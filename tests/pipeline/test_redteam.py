"""``paxsim redteam`` against a real stack: every defence of the catalogue holds, and the harness does report a
defence that is missing (a red team that cannot fail proves nothing)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from core.config import Settings
from paxsim.redteam import CATALOGUE, run_redteam


def _small(settings: Settings, tmp_path: Path) -> Settings:
    scenario = settings.scenario.model_copy(update={"cameras": 8, "travellers": 120})
    return settings.model_copy(update={"scenario": scenario, "state_dir": tmp_path / "redteam"})


def test_every_attack_of_the_catalogue_is_defended(settings: Settings, tmp_path: Path):
    results = run_redteam(_small(settings, tmp_path), Console(quiet=True))
    assert len(results) == len(CATALOGUE)
    failed = [(r.attack, r.observed) for r in results if not r.passed]
    assert not failed, failed


def test_a_missing_defence_is_reported_as_failed(settings: Settings, tmp_path: Path, monkeypatch):
    """With ``enforcement: off`` the gate forwards a plaintext embedding, and a scan blind to the stages' stores
    misses a planted gallery template: the red team must say FAIL for both."""
    from paxsim import redteam
    from policy import scan
    from policy.policyfile import DEFAULT_POLICY_PATH

    off = tmp_path / "off.yaml"  # the packaged policy, zones and all, with enforcement switched off
    off.write_text(Path(DEFAULT_POLICY_PATH).read_text() + "\nenforcement: off\n")
    monkeypatch.setenv("PAXSIM_UNSAFE_NO_POLICY", "1")
    s = _small(settings, tmp_path)
    s = s.model_copy(update={"policy": s.policy.model_copy(update={"file": off})})
    monkeypatch.setattr(scan, "registered_stores", lambda _settings: [])
    plaintext, gallery = run_redteam(s, Console(quiet=True), attacks=[CATALOGUE[0], redteam.gallery_template], wait_s=4.0)
    assert not plaintext.passed and "no dead letter" in plaintext.observed, plaintext
    assert not gallery.passed and gallery.observed == "0 finding(s)", gallery
