"""Every replica of a stage hears every erasure, on the real embedded broker: the erasure topic is read whole
by each process, not shared out by a consumer group (two matchers used to split the requests between them)."""

from __future__ import annotations

import asyncio
import time

from broker import topics as t
from broker.clients import start_producer
from broker.messages import ErasureRequest, encode
from policy.erasure import ERASURES, ErasureWorker


async def _publish(settings, *reqs: ErasureRequest) -> None:  # noqa: ANN001
    producer = await start_producer(settings)
    try:
        for r in reqs:
            await (await producer.send(t.ERASURES.name, encode(r), key=r.subject_id.encode()))
    finally:
        await producer.stop()


async def _until(check, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


def test_three_replicas_of_one_stage_each_apply_every_request(client_settings):
    subjects = [f"pax-{i:03d}" for i in range(12)]  # keys spread over every partition of the topic

    async def run() -> list[set[str]]:
        seen: list[set[str]] = [set(), set(), set()]
        stop = asyncio.Event()
        workers = [ErasureWorker("matcher", [lambda r, s=s: s.add(r.subject_id)]) for s in seen]
        tasks = [asyncio.create_task(w.run(client_settings, stop)) for w in workers]
        await asyncio.sleep(1.0)  # every replica is following the topic before the requests arrive
        now = time.time()
        await _publish(
            client_settings, *(ErasureRequest(request_id=f"r{i}", subject_id=s, requested_at=now) for i, s in enumerate(subjects))
        )
        await _until(lambda: all(len(s) == len(subjects) for s in seen), 20)
        stop.set()
        await asyncio.gather(*tasks)
        return seen

    seen = asyncio.run(run())
    assert [sorted(s) for s in seen] == [subjects] * 3, "a replica missed erasure requests"


def test_a_replica_started_later_catches_up_and_a_failing_handler_is_retried(client_settings):
    async def run() -> tuple[set[str], int]:
        await _publish(client_settings, ErasureRequest(request_id="old", subject_id="pax-old", requested_at=time.time() - 5))
        seen: set[str] = set()
        failures = {"left": 2}

        def flaky(r: ErasureRequest) -> None:  # a full disk or an unreachable key holder, twice
            if r.subject_id == "pax-new" and failures["left"]:
                failures["left"] -= 1
                raise OSError("no space left on device")
            seen.add(r.subject_id)

        stop = asyncio.Event()
        worker = ErasureWorker("dashboard", [flaky])
        task = asyncio.create_task(worker.run(client_settings, stop))
        await asyncio.sleep(0.5)
        await _publish(client_settings, ErasureRequest(request_id="new", subject_id="pax-new", requested_at=time.time()))
        await _until(lambda: seen == {"pax-old", "pax-new"}, 20)
        stop.set()
        await task
        return seen, len(worker.latencies)

    before = ERASURES.labels("dashboard", "failed")._value.get()
    seen, timed = asyncio.run(run())
    assert seen == {"pax-old", "pax-new"}, "the request before start was not caught up, or the failing one was dropped"
    assert ERASURES.labels("dashboard", "failed")._value.get() - before == 2
    assert timed == 1, "only the live request is timed; the caught-up one is counted as replayed"


def test_the_erasure_topic_links_nobody_and_every_stage_still_applies_it(client_settings, keys):
    """With a key holder the request travels sealed under the control key class: a broker reader joining the
    erasure topic with the matches and tracks finds neither the subject id nor its pseudonym; a stage opens it."""
    from broker.reader import read_all
    from policy.consent import ConsentRecord, ConsentRegistry, registry_path
    from policy.crypto import CONTROL_CLASS, EpochKeyRing, HttpKeySource, SubjectVault
    from policy.erasure import publish_pending

    source = HttpKeySource(keys.url, keys.token)
    vault, control = SubjectVault(source), EpochKeyRing(source, CONTROL_CLASS)
    ps = vault.pseudonym("pax-042")  # the subject has been matched: its pseudonym is on the output topics
    now = time.time()
    registry = ConsentRegistry.open(registry_path(client_settings.state_dir))
    registry.grant(ConsentRecord("pax-042", "boarding", now - 10, now + 1000))
    registry.withdraw("pax-042")

    async def run() -> set[tuple[str, str]]:
        applied: set[tuple[str, str]] = set()
        stop = asyncio.Event()
        worker = ErasureWorker(
            "matcher", [lambda r: applied.add((r.subject_id, r.subject_ref))], control=EpochKeyRing(source, CONTROL_CLASS)
        )
        task = asyncio.create_task(worker.run(client_settings, stop))
        await asyncio.sleep(0.5)
        # a producer that can only write to the topic forges an unsealed request for another subject
        await _publish(client_settings, ErasureRequest(request_id="forged", subject_id="pax-043", requested_at=time.time()))
        producer = await start_producer(client_settings)
        try:
            assert await publish_pending(registry, producer, vault, control) == 1
        finally:
            await producer.stop()
        await _until(lambda: bool(applied), 20)
        await asyncio.sleep(0.5)  # the forged one was read before the real one: it had its chance
        stop.set()
        await task
        return applied

    assert asyncio.run(run()) == {("pax-042", ps)}, "the stage did not open the sealed request, or obeyed the forged one"
    from broker.messages import decode

    (rec,) = [r for r in asyncio.run(read_all(client_settings, t.ERASURES.name)) if decode(r.value, ErasureRequest).request_id != "forged"]
    for needle in (b"pax-042", ps.encode()):
        assert needle not in rec.value and needle not in (rec.key or b""), f"{needle!r} is readable on the erasure topic"


def test_a_queued_request_keeps_the_pseudonym_named_at_acceptance_and_waits_for_the_key_holder(tmp_path):
    """The pseudonym is named when the request is accepted and kept in the durable outbox: published later,
    after the subject's key is gone, it still names it. Without it, publication waits for the key holder
    instead of going out without it (pseudonymous copies would stay behind). Once published, the outbox
    forgets the pseudonym."""
    import sqlite3

    import pytest

    from policy.consent import ConsentRecord, ConsentRegistry
    from policy.crypto import KeyHolder, KeyUnavailable, LocalKeySource, SubjectVault
    from policy.erasure import for_the_topic

    holder = KeyHolder({"sightings": (10, 120)})
    vault = SubjectVault(LocalKeySource(holder))
    ps = vault.pseudonym("pax-1")
    db = tmp_path / "consent.sqlite"
    registry = ConsentRegistry.open(db)
    now = time.time()
    registry.grant(ConsentRecord("pax-1", "boarding", now - 10, now + 1000))
    registry.grant(ConsentRecord("pax-2", "boarding", now - 10, now + 1000))
    registry.withdraw("pax-1", subject_ref=ps)
    holder.destroy_subject("pax-1")  # a matcher applied it from another copy before this one was published
    queued = {r.subject_id: r for r in ConsentRegistry.open(db).pending_erasures()}  # another process reads it
    assert for_the_topic(queued["pax-1"], vault, None).subject_ref == ps

    class Down:
        def subject_keys(self, ids, create):  # noqa: ANN001, ANN201
            raise KeyUnavailable("key holder unreachable")

    vault.pseudonym("pax-2")
    registry.withdraw("pax-2")  # accepted while the pseudonym could not be named (e.g. the CLI, no key holder)
    later = {r.subject_id: r for r in registry.pending_erasures()}["pax-2"]
    with pytest.raises(KeyUnavailable):
        for_the_topic(later, SubjectVault(Down()), None)  # type: ignore[arg-type]
    assert for_the_topic(later, vault, None).subject_ref == vault.pseudonym("pax-2")

    registry.mark_published([r.request_id for r in registry.pending_erasures()])
    assert sqlite3.connect(db).execute("SELECT count(*) FROM erasures WHERE subject_ref IS NOT NULL").fetchone() == (0,)
