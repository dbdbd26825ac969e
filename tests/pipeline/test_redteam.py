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


def test_every_check_fails_with_its_defence_off(settings: Settings, tmp_path: Path):
    """The same catalogue on a stack whose every tested defence is switched off (core.faults, honoured by the key
    holder, the stages and the scanner, started the real way): every check must say FAIL. A check that passes
    here does not test the defence it names."""
    results = run_redteam(_small(settings, tmp_path), Console(quiet=True), wait_s=4.0, defences_off=True)
    assert len(results) == len(CATALOGUE)
    passed = [(r.attack, r.observed) for r in results if r.passed]
    assert not passed, f"checks that pass without their defence: {passed}"
    crashed = [(r.attack, r.observed) for r in results if r.observed.startswith("error:")]
    assert not crashed, f"the harness failed rather than observed the missing defence: {crashed}"
