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
    """The run's state directory, made owner-only (0700): it holds personal data, keys' credentials and logs."""
    return private_dir(settings.state_dir)


def private_dir(path: str | Path) -> Path:
    """``path`` as a directory only its owner can enter (made if missing; an existing one we own is tightened)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        path.chmod(0o700)
    return path


RUN_MARKER = "up.pid"  # in <state_dir>/up while `paxsim up` runs there: its pid


def live_run_dir(state: str | Path) -> Path | None:
    """``<state>/up`` while a ``paxsim up`` of this state dir is running (its marker names a live process), else
    None: the CLI then works on the running stack's registry and chains, not on a second set beside them."""
    run = Path(state) / "up"
    try:
        pid = int((run / RUN_MARKER).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return run


def gallery_path(settings: Settings) -> Path:
    return state_dir(settings) / "gallery.npz"


def ground_truth_path(settings: Settings) -> Path:
    """Scenario ground truth (event id → traveller) for evaluation; written by the edge, never published."""
    return state_dir(settings) / "ground-truth.jsonl"
