"""What the leak scanner reads from running stages: their ``/metrics`` label values and the dashboard's state.

Both are read once, when the store is made (:meth:`MetricsStore.fetch`, :meth:`DashboardStore.fetch`), so a
run takes them while its stages are up and scans them with the topics and the files afterwards.

* A metric label must never name a person: no purpose covers a metric (it is scraped, kept by Prometheus for
  weeks and shown on dashboards without an audit record). Every label value that is a known subject id or a
  pseudonym is an item; a linkable one is a finding whatever the subject consented to.
* The dashboard keeps trajectories and recent alerts in memory. ``GET /api/state/refs`` (auditor or admin,
  audited) lists every subject reference it holds with its purpose, zone and time; each is checked like a
  stored item (consent now and at capture, the purpose's retention).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from policy.scan import PSEUDONYM, TOKEN
from policy.stores import StoredItem

METRIC_LABEL = "a metric label (no purpose covers metrics: scraped, kept and shown without an audit record)"
STATE_REFS_PATH = "/api/state/refs"


class LiveStoreError(RuntimeError):
    """A running stage did not answer the scanner (down, or refused its credential)."""


def label_refs(text: str, subject_ids: set[str]) -> Iterator[tuple[str, str]]:
    """(``metric{label="value"}``, reference) for every label value in a Prometheus exposition that is a
    pseudonym or one of ``subject_ids``."""
    seen: set[tuple[str, str, str]] = set()  # a counter's _total and _created series carry the same labels
    for family in text_string_to_metric_families(text):
        name = re.sub(r"_(total|created|count|sum|bucket)$", "", family.name)
        for sample in family.samples:
            for label, value in sample.labels.items():
                if (name, label, value) in seen:
                    continue
                seen.add((name, label, value))
                refs = set(PSEUDONYM.findall(value)) | {tok for tok in TOKEN.findall(value) if tok in subject_ids}
                for ref in sorted(refs):
                    yield f'{name}{{{label}="{value}"}}', ref


@dataclass
class MetricsStore:
    """Label values of every stage's ``/metrics``, as read at :meth:`fetch` time."""

    name: str = "live:metrics"
    found: list[StoredItem] = field(default_factory=list)
    read: int = 0  # endpoints read

    @classmethod
    def fetch(cls, urls: dict[str, str], subject_ids: Iterable[str], at: float, timeout: float = 5.0) -> MetricsStore:
        """``urls``: stage name → its ``/metrics`` URL. Raises LiveStoreError if one does not answer."""
        ids = set(subject_ids)
        store = cls()
        with httpx.Client(timeout=timeout) as http:
            for stage, url in sorted(urls.items()):
                try:
                    r = http.get(url)
                    r.raise_for_status()
                except httpx.HTTPError as exc:
                    raise LiveStoreError(f"{stage} /metrics ({url}): {exc}") from exc
                store.read += 1
                for where, ref in label_refs(r.text, ids):
                    store.found.append(StoredItem(f"{stage} {where}", ref, None, None, at, never_allowed=METRIC_LABEL))
        return store

    def items(self) -> Iterable[StoredItem]:
        return list(self.found)


@dataclass
class DashboardStore:
    """The dashboard's in-memory subject references (``GET /api/state/refs``), as read at :meth:`fetch` time."""

    name: str = "live:dashboard"
    found: list[StoredItem] = field(default_factory=list)

    @classmethod
    def fetch(cls, base_url: str, token: str, timeout: float = 10.0, http: httpx.Client | None = None) -> DashboardStore:
        """``http``: a client to use instead of a new one (e.g. an in-process ASGI client)."""
        get = http.get if http is not None else httpx.get
        try:
            r = get(base_url.rstrip("/") + STATE_REFS_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
            r.raise_for_status()
            rows = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LiveStoreError(f"dashboard state ({base_url}): {exc}") from exc
        return cls(
            found=[
                StoredItem(f"dashboard {row['where']}", row["subject_ref"], row.get("purpose") or None, row.get("zone"), float(row["at"]))
                for row in rows
            ]
        )

    def items(self) -> Iterable[StoredItem]:
        return list(self.found)
