"""The key holder's sealed state file: a restart keeps keys and tombstones, never an epoch key past its TTL."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from policy.crypto import EpochKeyRing, HttpKeySource, KeyExpired, KeyHolder, LocalKeySource, SubjectVault, open_sighting, seal_sighting
from policy.keyd import spawn_keyd
from policy.keystore import SealedState, StateFileError
from tests.policy.test_crypto import Clock, sighting

CLASSES = {"sightings": (0.25, 2.0)}


def holder(tmp_path: Path, clock: Clock) -> KeyHolder:
    return KeyHolder(CLASSES, clock=clock, store=SealedState(tmp_path / "keyd.state", tmp_path / "keyd.state.key"))


def test_a_restarted_holder_keeps_subject_keys_tombstones_and_live_epochs_but_not_expired_ones(tmp_path: Path):
    clock = Clock()
    first = holder(tmp_path, clock)
    vault, ring = SubjectVault(LocalKeySource(first)), EpochKeyRing(LocalKeySource(first), clock=clock)
    kid, blob = vault.seal("pax-1", b"template")
    vault.seal("pax-2", b"other")
    old = seal_sighting(ring, sighting(clock.t))
    clock.t += 1.0
    young = seal_sighting(ring, sighting(clock.t))
    assert vault.erase("pax-2")
    clock.t += 1.5  # ``old`` is now past its 2 s TTL, ``young`` is not

    second = holder(tmp_path, clock)  # the process died; a new one starts from the file
    assert second.instance == first.instance
    assert SubjectVault(LocalKeySource(second)).open("pax-1", kid, blob) == b"template"
    assert second.subject_keys(["pax-2"], create=True) == {}  # erased stays erased across the restart
    ring2 = EpochKeyRing(LocalKeySource(second), clock=clock)
    assert open_sighting(ring2, young).embedding
    with pytest.raises(KeyExpired):
        open_sighting(ring2, old)


def test_state_and_master_key_are_private_and_a_wrong_master_key_fails_closed_saying_what_to_do(tmp_path: Path):
    clock = Clock()
    h = holder(tmp_path, clock)
    h.subject_keys(["pax-1"], create=True)
    state, key = tmp_path / "keyd.state", tmp_path / "keyd.state.key"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"pax-1" not in state.read_bytes()  # sealed: not even the subject ids are readable
    os.chmod(key, 0o644)
    with pytest.raises(StateFileError, match="chmod 600"):
        holder(tmp_path, clock)
    os.chmod(key, 0o600)
    key.write_text("00" * 32)
    with pytest.raises(StateFileError, match="move .* away to start with no keys"):
        holder(tmp_path, clock)


def test_keyd_killed_with_sigkill_comes_back_with_its_keys_on_the_same_address(tmp_path: Path):
    keyd = spawn_keyd(state=tmp_path / "keyd" / "state")
    try:
        src = HttpKeySource(keyd.url, keyd.token)
        kid, blob = SubjectVault(src).seal("pax-1", b"template")
        assert src.destroy_subject("pax-9") is False  # a tombstone for a subject that never had a key
        os.kill(keyd.proc.pid, signal.SIGKILL)
        keyd.proc.wait()
        keyd.restart()
        src = HttpKeySource(keyd.url, keyd.token)
        assert SubjectVault(src).open("pax-1", kid, blob) == b"template"
        assert src.subject_keys(["pax-9"], create=True) == {}
        assert SubjectVault(src).open("pax-1", kid, blob) == b"template"
    finally:
        keyd.stop()


def test_the_holder_keeps_no_list_of_erased_subjects(tmp_path: Path):
    """Tombstones are keyed hashes: the sealed state, opened with its master key, names no erased subject."""
    import json

    h = holder(tmp_path, Clock())
    h.subject_keys(["pax-erased", "pax-kept"], create=True)
    assert h.destroy_subject("pax-erased")
    doc = SealedState(tmp_path / "keyd.state", tmp_path / "keyd.state.key").load()
    text = json.dumps(doc)
    assert "pax-kept" in text and "pax-erased" not in text, "the state lists an erased subject"
    again = holder(tmp_path, Clock())
    assert again.subject_keys(["pax-erased"], create=True) == {}  # still erased, by its tombstone alone


def test_keyd_refuses_a_state_file_without_a_master_key_kept_elsewhere(tmp_path: Path):
    import subprocess
    import sys

    env = {**os.environ, "PAXSIM_KEYD_TOKEN": "t" * 43}
    for extra in ([], ["--master-key", str(tmp_path / "state.key")]):
        r = subprocess.run(
            [sys.executable, "-m", "policy.keyd", "--state", str(tmp_path / "state"), *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2 and "--master-key FILE, kept outside the state file's directory" in r.stderr, r.stderr
    assert not (tmp_path / "state.key").exists() and not (tmp_path / "state").exists()
