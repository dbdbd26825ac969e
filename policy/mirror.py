"""Mirror the audit chains to the audit topic: an off-host copy that shows a removed tail or a rewritten chain.

    mirror = AuditMirror(chain_path(state, "gate"))
    await mirror.run(producer, stop)        # every ~1 s: new complete lines → audit topic, acked, then the cursor

Each chain entry is published as it is on disk (msgpack; a batch entry with its decision rows), key =
actor. The cursor ``<chain>.mirror`` (last mirrored seq, its hash and the byte offset after it) is written
only after the broker acknowledged everything up to it, so a restarted mirror resumes after the last
acknowledged entry: at least once, never a hole (a re-sent entry is a harmless duplicate).

Several processes may share a chain (edge shards): only the holder of ``<chain>.mirror.lock`` mirrors it;
when it dies the lock is released and another process takes over on its next tick.

Not covered: Tansu loses everything on restart; the scanner then reports the chain entries mirrored
before the restart as a gap in the copy (which is the honest answer: the anchor is gone).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from broker.stream import acknowledged
from policy.audit import AuditRecord, _json_dec, batch_rows, encode_topic, is_batch

log = logging.getLogger("paxsim.policy.mirror")

MIRRORED = Counter("paxsim_audit_mirrored_total", "Audit chain entries acknowledged on the audit topic", ["chain"])
CHECKPOINT_REFUSED = Counter(
    "paxsim_audit_checkpoint_refusals_total", "Chain heads the key holder refused to checkpoint (truncated or rewritten chain)", ["chain"]
)
MIRROR_LAG = Gauge(
    "paxsim_audit_mirror_lag_seconds", "Age of the last chain entry acknowledged on the audit topic, when it was acknowledged", ["chain"]
)


@dataclass(slots=True)
class Cursor:
    seq: int = 0
    hash: str = ""
    offset: int = 0  # bytes of the chain file up to and including the entry ``seq``


class AuditMirror:
    """Copies one chain file's new entries to the audit topic (see module docstring)."""

    def __init__(self, path: str | Path, topic: str | None = None, max_batch: int = 2000, notary: Any = None) -> None:  # noqa: ANN401
        """``notary``: a key source whose ``checkpoint`` countersigns the mirrored head (policy.notary)."""
        from broker import topics as t

        self.notary = notary
        self.checkpointed = 0  # seq of the last head the notary signed
        # (seq, hash) the file holds at ``checkpointed``, read from the next entry's prev_hash: the notary's proof
        # that the new head extends its last checkpoint (never from memory: a regrown tail must not pass)
        self._link: tuple[int, str] | None = None
        self.path = Path(path)
        self.topic = topic or t.AUDIT.name
        self.max_batch = max_batch
        self.cursor_path = self.path.with_suffix(".mirror")
        self._lock_path = self.path.with_suffix(".mirror.lock")
        self._lock_fd = -1
        self.cursor = self._load()
        self._counter = MIRRORED.labels(self.path.stem)
        self._gauge = MIRROR_LAG.labels(self.path.stem)

    def _load(self) -> Cursor:
        try:
            d = json.loads(self.cursor_path.read_text())
            return Cursor(int(d["seq"]), str(d["hash"]), int(d["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return Cursor()

    def _save(self) -> None:
        tmp = self.cursor_path.with_suffix(".mirror.tmp")
        tmp.write_text(json.dumps({"seq": self.cursor.seq, "hash": self.cursor.hash, "offset": self.cursor.offset}))
        tmp.replace(self.cursor_path)

    def acquire(self) -> bool:
        """Take the chain's mirror lock if nobody holds it (kept until :meth:`close` or process exit)."""
        if self._lock_fd >= 0:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self.cursor = self._load()  # the previous holder may have advanced it
        return True

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def pending(self) -> list[tuple[AuditRecord, list | None, int, bytes]]:
        """Complete entries after the cursor: (record, batch rows, file offset after it, raw line)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        start = self.cursor.offset
        if start > size:  # the file shrank under us (cut or replaced): look for seq > cursor from the start
            start = 0
        out: list[tuple[AuditRecord, list | None, int, bytes]] = []
        with open(self.path, "rb") as f:
            f.seek(start)
            pos = start
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn or being written: next time
                pos += len(raw)
                try:
                    rec = _json_dec.decode(raw)
                except Exception:  # unreadable line: `audit verify` reports it; it cannot be mirrored
                    continue
                if rec.seq <= self.cursor.seq:
                    continue
                out.append((rec, batch_rows(raw) if is_batch(rec) else None, pos, raw))
                if len(out) >= self.max_batch:
                    break
        return out

    async def anchor(self) -> None:
        """Have the key holder countersign the mirrored head (once per new head). A refusal means the chain
        went back or was rewritten under the mirror: logged and counted, and the scan reports it."""
        if self.notary is None or self.cursor.seq <= self.checkpointed:
            return
        from policy.notary import CheckpointRefused

        chain, seq, head = self.path.stem, self.cursor.seq, self.cursor.hash
        link = self._link if self._link is not None and self._link[0] == self.checkpointed else None
        try:
            try:
                await asyncio.to_thread(self.notary.checkpoint, chain, seq, head, link)
            except CheckpointRefused as exc:
                # the notary's last checkpoint is not the one this process made (a restart): show the chain's
                # record at that seq, as the file holds it now, and ask once more
                if exc.need_seq is None or (link is not None and link[0] == exc.need_seq):
                    raise
                found = await asyncio.to_thread(hash_at, self.path, exc.need_seq)
                if found is None:
                    raise CheckpointRefused(f"chain {chain} no longer holds its checkpointed seq {exc.need_seq} (truncated?)") from None
                await asyncio.to_thread(self.notary.checkpoint, chain, seq, head, (exc.need_seq, found))
        except CheckpointRefused as exc:
            CHECKPOINT_REFUSED.labels(chain).inc()
            log.error("audit checkpoint refused", extra={"chain": chain, "error": str(exc)})
        self.checkpointed, self._link = seq, None

    async def mirror_once(self, producer: Any) -> int:  # noqa: ANN401
        """Publish every new complete entry, wait for the acks, advance the cursor, then have the head
        countersigned. Returns how many entries went out."""
        if not self.acquire():
            return 0
        total = 0
        while True:
            todo = await asyncio.to_thread(self.pending)
            if not todo:
                await self.anchor()
                return total
            first = todo[0][0]
            if first.seq == self.checkpointed + 1:
                self._link = (self.checkpointed, first.prev_hash)
            sends = [await producer.send(self.topic, encode_topic(rec, rows), key=rec.actor.encode()) for rec, rows, _pos, _raw in todo]
            await acknowledged(sends)
            last, _rows, pos, _raw = todo[-1]
            self.cursor = Cursor(last.seq, last.hash, pos)
            self._save()
            self._counter.inc(len(todo))
            self._gauge.set(max(0.0, time.time() - last.at))
            total += len(todo)

    async def run(self, producer: Any, stop: asyncio.Event, every_s: float = 1.0) -> None:  # noqa: ANN401
        """Mirror every ``every_s`` until ``stop``; a last pass on the way out."""
        try:
            while not stop.is_set():
                await self._tick(producer)
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except TimeoutError:
                    pass
            await self._tick(producer)
        finally:
            self.close()

    async def _tick(self, producer: Any) -> None:  # noqa: ANN401
        try:
            await self.mirror_once(producer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker briefly away: the cursor did not move, the next tick retries
            log.warning("audit mirror failed; will retry", extra={"chain": self.path.stem, "error": repr(exc)})


def hash_at(path: Path, seq: int) -> str | None:
    """The hash of the chain's record ``seq`` as the file holds it now (None: not there)."""
    from policy.audit import read_records

    for _n, rec, _raw in read_records(path):
        if rec is not None and rec.seq == seq:
            return rec.hash
    return None


async def mirror_dir(
    directory: Path,
    producer: Any,  # noqa: ANN401
    stop: asyncio.Event,
    every_s: float = 1.0,
    notary: Any = None,  # noqa: ANN401
    role: str = "admin",
) -> None:
    """Mirror every chain in ``directory`` whose lock this process can take (new chains are picked up), and
    have each mirrored head countersigned by ``notary`` (the run's key source) when there is one. ``role``: that
    credential's; chains it may not anchor (another stage's, :func:`policy.notary.may_checkpoint`) are left to
    their own stage."""
    from policy.notary import may_checkpoint

    mirrors: dict[Path, AuditMirror] = {}
    try:
        while True:
            if directory.is_dir():
                for p in sorted(directory.glob("*.jsonl")):
                    if p not in mirrors and (notary is None or may_checkpoint(role, p.stem)):
                        mirrors[p] = AuditMirror(p, notary=notary)
            for m in mirrors.values():
                await m._tick(producer)
            if stop.is_set():
                return
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
    finally:
        for m in mirrors.values():
            m.close()
