"""The virtual edge on the real embedded broker: when its loop falls behind (here: blocked for 2.5 s), the
sightings that are more than ``LATE_S`` late are shed and counted, never published late or lost unseen."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import REGISTRY

from broker import topics as t
from broker.messages import Sighting, decode
from broker.reader import read_all
from core.config import Settings
from edge.service import LATE_S, run_virtual_edge
from scenario.virtual import VirtualAirport


def late_drops(reason: str = "late") -> float:
    return REGISTRY.get_sample_value("paxsim_edge_dropped_total", {"reason": reason}) or 0.0


def test_virtual_edge_sheds_and_counts_late_sightings(client_settings: Settings, key_holder):
    settings = client_settings.model_copy(update={"scenario": client_settings.scenario.model_copy(update={"events_per_second": 80.0})})
    before, queued_before = late_drops(), late_drops("late_in_queue")

    async def run() -> int:
        async def stall() -> None:
            await asyncio.sleep(1.0)
            time.sleep(2.5)  # the edge's event loop is stuck (an overloaded host): its schedule runs on without it

        staller = asyncio.create_task(stall())
        offered = await run_virtual_edge(settings, asyncio.Event(), VirtualAirport(settings.scenario, 5.0), duration_s=5.0)
        await staller
        return offered

    offered = asyncio.run(run())
    records = asyncio.run(read_all(settings, t.SIGHTINGS.name))
    shed = late_drops() - before
    assert shed > 0
    # offered before the stall but still in the publish queue when it ended: shed there, counted
    assert offered == len(records) + late_drops("late_in_queue") - queued_before and len(records) > 0
    lags = [r.timestamp / 1000 - decode(r.value, Sighting).captured_at for r in records]
    # without shedding, the sightings due during the stall go out ~2.5 s late
    assert max(lags) < LATE_S + 0.75, sorted(lags)[-5:]


def test_virtual_edge_outlives_its_key_holder_and_counts_what_it_could_not_seal(client_settings: Settings, monkeypatch, tmp_path):
    """The key holder dies 1 s in; with 1 s epochs the edge's public keys (previous, current, next epoch) run out
    soon after: every sighting it cannot seal is dropped and counted, and the edge itself carries on."""
    from policy.keyd import spawn_keyd

    default = (Path(__file__).resolve().parents[2] / "policy" / "default-policy.yaml").read_text()
    assert "  epoch_s: 10" in default
    policy = tmp_path / "policy.yaml"
    policy.write_text(default.replace("  epoch_s: 10", "  epoch_s: 1"))
    key_holder = spawn_keyd(policy)
    for name, value in key_holder.env.items():
        monkeypatch.setenv(name, value)
    settings = client_settings.model_copy(update={"scenario": client_settings.scenario.model_copy(update={"events_per_second": 80.0})})
    settings = settings.model_copy(update={"policy": settings.policy.model_copy(update={"file": str(policy)})})
    unsealable = "paxsim_edge_unsealable_total"
    before = REGISTRY.get_sample_value(unsealable, {"reason": "no_key"}) or 0.0

    async def run() -> int:
        async def kill() -> None:
            await asyncio.sleep(1.0)
            key_holder.stop()

        killer = asyncio.create_task(kill())
        offered = await run_virtual_edge(settings, asyncio.Event(), VirtualAirport(settings.scenario, 8.0), duration_s=8.0)
        await killer
        return offered

    try:
        offered = asyncio.run(run())  # returns: the edge does not die with its key holder
    finally:
        key_holder.stop()
    assert offered > 0
    dropped = (REGISTRY.get_sample_value(unsealable, {"reason": "no_key"}) or 0.0) - before
    assert dropped > 0
