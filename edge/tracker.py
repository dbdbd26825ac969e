"""Intra-camera face tracker: IoU association with a centroid fallback, constant-velocity prediction.

Each processed frame's detections are matched to live tracks by the Hungarian method on a cost that
prefers overlap (1 − IoU) and falls back to centre distance (relative to face size) for fast movers or
sparse sampling. Unmatched detections start tracks; tracks unseen for ``max_misses`` frames end.

Embedding is gated per track: once at birth, then again only when the view is clearly better
(quality up by ``improve_margin``), at most ``max_embeds`` times; that is what makes the edge cheap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment

from edge.vision.detector import Box, iou

_NO = 1e6


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iou_min: float = Field(default=0.2, ge=0.0, le=1.0, description="overlap that counts as the same face")
    centroid_gate: float = Field(default=1.0, ge=0.0, description="max centre shift from the prediction, in face widths per √frame gap")
    max_misses: int = Field(default=8, ge=0, description="frames a track may go unseen before it ends")
    min_hits: int = Field(default=1, ge=1, description="detections before a track is reported (and embedded)")
    improve_margin: float = Field(default=0.08, ge=0.0, description="quality gain that earns a re-embedding")
    max_embeds: int = Field(default=4, ge=1, description="embeddings per track at most")
    min_quality: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="never embed a view below this quality (set it to the edge quality gate: such views are dropped anyway)",
    )
    embed_every_frame: bool = Field(default=False, description="benchmark baseline: no gating")


@dataclass(slots=True)
class Track:
    track_id: int
    box: np.ndarray  # x, y, w, h (float)
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px per frame
    hits: int = 1
    misses: int = 0
    quality: float = 0.0
    embedded_quality: float | None = None
    embeds: int = 0

    def predicted(self, frame_index: int) -> np.ndarray:
        b = self.box.copy()
        b[:2] += self.velocity * max(0, frame_index - self.last_frame)
        return b

    @property
    def int_box(self) -> Box:
        x, y, w, h = self.box
        return (int(round(x)), int(round(y)), int(round(w)), int(round(h)))


@dataclass(slots=True)
class Assignment:
    det_index: int
    track: Track
    born: bool


def _cost(track_box: np.ndarray, det: Box, gate: float, iou_min: float, gap: int = 1) -> float:
    tb = (track_box[0], track_box[1], track_box[2], track_box[3])
    o = iou(tb, det)
    if o >= iou_min:
        return 1.0 - o
    size = max(1.0, (tb[2] + det[2]) / 2.0)
    dc = np.hypot(tb[0] + tb[2] / 2 - (det[0] + det[2] / 2), tb[1] + tb[3] / 2 - (det[1] + det[3] / 2)) / size
    ratio = det[2] / max(1.0, tb[2])
    if dc <= gate * max(1, gap) ** 0.5 and 0.6 <= ratio <= 1.67:
        return 1.0 + dc
    return _NO


class Tracker:
    """One camera's tracks. Not thread-safe: one pipeline task owns it."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)
        self.started = 0

    def predicted_boxes(self, frame_index: int) -> list[Box]:
        out = []
        for t in self.tracks.values():
            x, y, w, h = t.predicted(frame_index)
            out.append((int(x), int(y), int(w), int(h)))
        return out

    def update(self, frame_index: int, boxes: Sequence[Box], qualities: Sequence[float]) -> list[Assignment]:
        """Match this frame's detections; returns one Assignment per detection, in detection order."""
        st = self.settings
        live = list(self.tracks.values())
        assigned: dict[int, Track] = {}
        if live and boxes:
            cost = np.array(
                [[_cost(t.predicted(frame_index), b, st.centroid_gate, st.iou_min, frame_index - t.last_frame) for b in boxes] for t in live]
            )
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _NO:
                    assigned[c] = live[r]
        out: list[Assignment] = []
        for i, (b, q) in enumerate(zip(boxes, qualities)):
            t = assigned.get(i)
            if t is None:
                t = Track(next(self._ids), np.array(b, dtype=float), frame_index, quality=q)
                self.tracks[t.track_id] = t
                self.started += 1
                out.append(Assignment(i, t, True))
                continue
            gap = max(1, frame_index - t.last_frame)
            new = np.array(b, dtype=float)
            shift = (new[:2] + new[2:] / 2 - (t.box[:2] + t.box[2:] / 2)) / gap
            t.velocity = 0.5 * t.velocity + 0.5 * shift
            t.box, t.last_frame = new, frame_index
            t.hits += 1
            t.misses = 0
            t.quality = q
            out.append(Assignment(i, t, False))
        seen = {a.track.track_id for a in out}
        for t in live:
            if t.track_id not in seen:
                t.misses += 1
                if t.misses > st.max_misses:
                    del self.tracks[t.track_id]
        return out

    def reportable(self, track: Track) -> bool:
        return track.hits >= self.settings.min_hits

    def should_embed(self, track: Track, quality: float) -> bool:
        st = self.settings
        if st.embed_every_frame:
            return True
        if not self.reportable(track) or track.embeds >= st.max_embeds or not quality >= st.min_quality:
            return False
        return track.embedded_quality is None or quality >= track.embedded_quality + st.improve_margin

    def mark_embedded(self, track: Track, quality: float) -> None:
        track.embeds += 1
        track.embedded_quality = quality if track.embedded_quality is None else max(track.embedded_quality, quality)
