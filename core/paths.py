"""Where each service keeps its files inside ``settings.state_dir`` (one place, so nobody guesses paths)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from core.config import Settings

INSTANCE_ENV = "PAXSIM_INSTANCE"  # which replica this process is (set per child by core.stack; compose: per service)


def instance_name() -> str:
    """This process's replica name: ``$PAXSIM_INSTANCE``, else the host name (one container per replica)."""
    return os.environ.get(INSTANCE_ENV) or socket.gethostname()


def state_dir(settings: Settings) -> Path:
    path = Path(settings.state_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def gallery_path(settings: Settings) -> Path:
    return state_dir(settings) / "gallery.npz"


def ground_truth_path(settings: Settings) -> Path:
    """Scenario ground truth (event id → traveller) for evaluation; written by the edge, never published."""
    return state_dir(settings) / "ground-truth.jsonl"
