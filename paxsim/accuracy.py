"""Accuracy and compliance of one run against the scenario's ground truth (event id → traveller).

A *genuine* event is one whose traveller is enrolled and has active consent for the zone's purpose at
capture time: the only events the system may identify. Everything else must come out unknown or refused;
a match on such an event is a false accept, and a match that names a non-consented traveller is a leak.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from broker.messages import Match


@dataclass(frozen=True, slots=True)
class Accuracy:
    events: int
    genuine: int
    rank1: float | None  # correct identifications / genuine events
    frr: float | None  # genuine events not identified / genuine events
    far: float | None  # non-genuine events identified as anyone / non-genuine events
    wrong_subject: int  # genuine events identified as somebody else
    leaks: int  # identifications naming a traveller without consent for that purpose (must be 0)

    def as_dict(self) -> dict:
        return asdict(self)


def read_truth(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {row["event_id"]: row["traveller_id"] for row in map(json.loads, path.read_text().splitlines()) if row}


def score(matches: Iterable[Match], truth: dict[str, str], allowed: Callable[[str, str, str, float], bool]) -> Accuracy:
    events = genuine = correct = missed = false_acc = impostor_events = wrong = leaks = 0
    for m in matches:
        who = truth.get(m.event_id)
        if who is None:
            continue
        events += 1
        is_genuine = bool(m.purpose) and allowed(who, m.purpose, m.zone, m.captured_at)
        matched = m.decision == "match"
        if matched and m.subject_id is not None and not allowed(m.subject_id, m.purpose, m.zone, m.captured_at):
            leaks += 1
        if is_genuine:
            genuine += 1
            if matched and m.subject_id == who:
                correct += 1
            elif matched:
                wrong += 1
            else:
                missed += 1
        else:
            impostor_events += 1
            false_acc += matched
    return Accuracy(
        events=events,
        genuine=genuine,
        rank1=correct / genuine if genuine else None,
        frr=missed / genuine if genuine else None,
        far=false_acc / impostor_events if impostor_events else None,
        wrong_subject=wrong,
        leaks=leaks,
    )
