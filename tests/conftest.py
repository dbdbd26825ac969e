"""Shared fixtures: settings in a temp state dir, and a real embedded broker per test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker.embedded import EmbeddedBroker
from core.config import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings (no env overrides) with the state dir in the test's temp dir."""
    s = load_settings(environ={})
    return s.model_copy(update={"state_dir": tmp_path / "state"})


@pytest.fixture
def broker(settings: Settings):
    """A fresh Tansu broker with every topic created; yields it, then kills it."""
    b = asyncio.run(EmbeddedBroker(settings).start())
    try:
        yield b
    finally:
        asyncio.run(b.stop())


@pytest.fixture
def client_settings(settings: Settings, broker: EmbeddedBroker) -> Settings:
    """Settings pointing the clients at the test's broker with the embedded-broker tuning."""
    return settings.model_copy(update={"broker": settings.broker.model_copy(update={"bootstrap": broker.bootstrap, "profile": "embedded"})})


@pytest.fixture
def keys():
    """The run's in-memory key holder (policy.keyd); services get its address and token through child_env."""
    from policy.keyd import spawn_keyd

    k = spawn_keyd()
    try:
        yield k
    finally:
        k.stop()
