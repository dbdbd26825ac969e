"""Where each service keeps its files inside ``settings.state_dir`` (one place, so nobody guesses paths)."""

from __future__ import annotations

from pathlib import Path

from paxsim.config import Settings
from policy.consent import registry_path


def state_dir(settings: Settings) -> Path:
    path = Path(settings.state_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def gallery_path(settings: Settings) -> Path:
    return state_dir(settings) / "gallery.npz"


def consent_path(settings: Settings) -> Path:
    """The SQLite consent registry shared by every process of a run (see policy/consent.py)."""
    return registry_path(state_dir(settings))


def ground_truth_path(settings: Settings) -> Path:
    """Scenario ground truth (event id → traveller) for evaluation; written by the edge, never published."""
    return state_dir(settings) / "ground-truth.jsonl"
