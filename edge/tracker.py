"""Intra-camera face tracker: IoU association with a centroid fallback, constant-velocity prediction.

Each processed frame's detections are matched to live tracks by the Hungarian method on a cost that
prefers overlap (1 − IoU) and falls back to centre distance (relative to face size) for fast movers or
sparse sampling. When the geometry is ambiguous (a detection could belong to more than one track, or a
track to more than one detection) an appearance cue decides: the distance between colour histograms of
the head and shoulders (always there, ~0.1 ms per face), or between the tracks' embeddings when both have one.
A pairing held only by the centre-distance fallback (no overlap) must also look alike
(``appearance_veto``): a different face appearing next to where a missed one was predicted starts a
new track instead of taking over the old one.
Unmatched detections start tracks; tracks unseen for ``max_misses`` frames end.

Embedding is gated per track, which is what makes the edge cheap (one dlib embedding costs ~3 HOG
detections of a 640×480 frame):

- best shot: a new track is watched for ``settle_frames`` frames and the best view among them is
  embedded (a face walking in gets bigger and sharper; embedding its first view would waste one); a
  track missed before it settles has its best view embedded at once (:meth:`Tracker.take_unsettled`);
- then again only on a clearly better view: quality up by ``improve_margin``, at least
  ``reembed_min_frames`` frames after the last embedding, and never once a view of ``good_enough``
  quality was embedded; at most ``max_embeds`` per track.

:meth:`Tracker.view_bar` tells the vision worker which quality a track's next view must reach to be
worth an embedding, so landmarks and chips are not computed for views that could not earn one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.vision.detector import Box, iou

_NO = 1e6


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iou_min: float = Field(default=0.2, ge=0.0, le=1.0, description="overlap that counts as the same face")
    centroid_gate: float = Field(default=1.0, ge=0.0, description="max centre shift from the prediction, in face widths per √frame gap")
    max_misses: int = Field(default=8, ge=0, description="frames a track may go unseen before it ends")
    min_hits: int = Field(default=1, ge=1, description="detections before a track is reported (and embedded)")
    settle_frames: int = Field(default=3, ge=1, description="frames a new track is watched; its best view is embedded")
    improve_margin: float = Field(default=0.15, ge=0.0, description="quality gain that earns a re-embedding")
    reembed_min_frames: int = Field(default=30, ge=0, description="frames between two embeddings of one track at least")
    good_enough: float = Field(default=0.85, ge=0.0, le=1.0, description="no re-embedding once a view this good was embedded")
    max_embeds: int = Field(default=3, ge=1, description="embeddings per track at most")
    min_quality: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="never embed a view below this quality (set it to the edge quality gate: such views are dropped anyway)",
    )
    embed_every_frame: bool = Field(default=False, description="benchmark baseline: no gating")
    appearance_weight: float = Field(
        default=0.5, ge=0.0, le=2.0, description="weight of the appearance distance in ambiguous associations (0: geometry only)"
    )
    ambiguity: float = Field(default=0.3, ge=0.0, description="cost gap below which two candidate pairings count as ambiguous")
    appearance_veto: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="a pairing without overlap (centre-distance fallback) needs an appearance distance below this",
    )


@dataclass(slots=True)
class Track:
    track_id: int
    box: np.ndarray  # x, y, w, h (float)
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px per frame
    hits: int = 1
    misses: int = 0
    quality: float = 0.0
    first_frame: int = 0
    embedded_quality: float | None = None
    embeds: int = 0
    last_embed_frame: int = -(10**9)
    best: object | None = None  # best view seen while settling (a FaceCandidate), not yet embedded
    best_quality: float = -1.0
    hist: np.ndarray | None = None  # running colour histogram of the face box (appearance cue)
    embedding: np.ndarray | None = None  # the track's latest embedding (appearance cue)

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


def _overlap_cost(track_box: np.ndarray, det: Box, iou_min: float) -> float:
    """A weak detection pairs with a track by overlap alone (no centre-distance fallback, no new tracks)."""
    o = iou((track_box[0], track_box[1], track_box[2], track_box[3]), det)
    return 1.0 - o if o >= iou_min else _NO


def appearance_distance(track: Track, hist: np.ndarray | None, embedding: np.ndarray | None = None) -> float | None:
    """Appearance distance in [0, 1] between a track and a detection, None if nothing to compare:
    embedding distance / 1.2 when both have an embedding (dlib: same person < 0.6), else the Hellinger
    distance between colour histograms."""
    if embedding is not None and track.embedding is not None:
        return float(min(1.0, np.linalg.norm(track.embedding - embedding) / 1.2))
    if hist is not None and track.hist is not None:
        bc = float(np.sum(np.sqrt(track.hist * hist)))
        return float(np.sqrt(max(0.0, 1.0 - bc)))
    return None


@dataclass(slots=True)
class EmbedState:
    """A track's gate state before an embedding was granted (to undo it when the embedding is dropped)."""

    embeds: int
    embedded_quality: float | None
    last_embed_frame: int


class Tracker:
    """One camera's tracks. Not thread-safe: one pipeline task owns it."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)
        self.started = 0
        self.unsettled: list[Track] = []  # set by update(): tracks missed before settling, with a view to embed

    def predicted_boxes(self, frame_index: int) -> list[Box]:
        out = []
        for t in self.tracks.values():
            x, y, w, h = t.predicted(frame_index)
            out.append((int(x), int(y), int(w), int(h)))
        return out

    def update(
        self,
        frame_index: int,
        boxes: Sequence[Box],
        qualities: Sequence[float],
        hists: Sequence[np.ndarray | None] | None = None,
        weak: Sequence[bool] | None = None,
    ) -> list[Assignment]:
        """Match this frame's detections; returns one Assignment per detection kept, in detection order.
        ``hists`` (optional, one per box): normalised colour histograms of the face boxes. ``weak`` (optional,
        one per box): low-score detections, matched by overlap to the tracks no confident detection took, and
        dropped when none is left for them: they continue a face the detector is unsure of, never start one
        (ByteTrack's second association)."""
        st = self.settings
        live = list(self.tracks.values())
        assigned: dict[int, Track] = {}
        hists = list(hists) if hists is not None else [None] * len(boxes)
        is_weak = list(weak) if weak is not None else [False] * len(boxes)
        strong = [i for i, w in enumerate(is_weak) if not w]
        if live and strong:
            cost = np.array(
                [
                    [_cost(t.predicted(frame_index), boxes[i], st.centroid_gate, st.iou_min, frame_index - t.last_frame) for i in strong]
                    for t in live
                ]
            )
            if st.appearance_weight > 0:
                self._add_appearance(cost, live, [hists[i] for i in strong])
            self._assign(cost, live, strong, assigned)
        weak_idx = [i for i, w in enumerate(is_weak) if w]
        taken = {t.track_id for t in assigned.values()}
        left = [t for t in live if t.track_id not in taken]
        if left and weak_idx:
            cost = np.array([[_overlap_cost(t.predicted(frame_index), boxes[i], st.iou_min) for i in weak_idx] for t in left])
            self._assign(cost, left, weak_idx, assigned)
        out: list[Assignment] = []
        for i, (b, q) in enumerate(zip(boxes, qualities)):
            t = assigned.get(i)
            h = hists[i]
            if t is None and is_weak[i]:
                continue
            if t is None:
                t = Track(next(self._ids), np.array(b, dtype=float), frame_index, quality=q, first_frame=frame_index)
                t.hist = h
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
            if h is not None:
                t.hist = h if t.hist is None else 0.7 * t.hist + 0.3 * h
            out.append(Assignment(i, t, False))
        seen = {a.track.track_id for a in out}
        self.unsettled = []
        for t in live:
            if t.track_id not in seen:
                if t.best is not None and t.embeds == 0 and self.reportable(t):
                    self.unsettled.append(t)  # lost before it settled: its best view is embedded now
                t.misses += 1
                if t.misses > st.max_misses:
                    del self.tracks[t.track_id]
        return out

    @staticmethod
    def _assign(cost: np.ndarray, tracks: list[Track], columns: list[int], assigned: dict[int, Track]) -> None:
        """Hungarian assignment on ``cost`` (tracks × ``columns``); feasible pairs go into ``assigned`` by detection index."""
        from scipy.optimize import linear_sum_assignment  # here, not at import: scipy.optimize costs ~0.6 s to load

        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if cost[r, c] < _NO:
                assigned[columns[c]] = tracks[r]

    def _add_appearance(self, cost: np.ndarray, live: list[Track], hists: list[np.ndarray | None]) -> None:
        """Add the weighted appearance distance to feasible pairings that are ambiguous: another feasible
        pairing of the same track or detection costs less than ``ambiguity`` more. Clear cases (one
        candidate either way) keep their geometric cost, so a changing look never breaks a sure match."""
        st = self.settings
        feasible = cost < _NO
        if not feasible.any():
            return
        big = np.where(feasible, cost, _NO)  # finite: gaps between infeasible pairings stay large, never NaN
        row_best = np.sort(big, axis=1)
        col_best = np.sort(big, axis=0)
        row_gap = (row_best[:, 1] - row_best[:, 0]) if big.shape[1] > 1 else np.full(big.shape[0], _NO)
        col_gap = (col_best[1, :] - col_best[0, :]) if big.shape[0] > 1 else np.full(big.shape[1], _NO)
        for r, c in zip(*np.nonzero(feasible)):
            fallback = cost[r, c] >= 1.0  # no overlap: only the centre distance put them together
            if fallback or row_gap[r] < st.ambiguity or col_gap[c] < st.ambiguity:
                d = appearance_distance(live[r], hists[c])
                if d is None:
                    continue
                if fallback and d > st.appearance_veto:
                    cost[r, c] = _NO  # a different-looking face where a lost track was expected: a new track
                else:
                    cost[r, c] += st.appearance_weight * d

    def coast(self) -> list[Track]:
        """Tracks to report on a frame the detector skipped: reportable ones found by the last detection."""
        return [t for t in self.tracks.values() if t.misses == 0 and self.reportable(t)]

    def reportable(self, track: Track) -> bool:
        return track.hits >= self.settings.min_hits

    def view_bar(self, track: Track, frame_index: int) -> float:
        """Quality the track's view at ``frame_index`` must reach to be embedded; ``inf`` if none can be."""
        st = self.settings
        if st.embed_every_frame or track.embeds == 0:
            return 0.0
        if (
            track.embeds >= st.max_embeds
            or (track.embedded_quality or 0.0) >= st.good_enough
            or frame_index - track.last_embed_frame < st.reembed_min_frames
        ):
            return math.inf
        return max(st.min_quality, (track.embedded_quality or 0.0) + st.improve_margin)

    def offer(self, track: Track, frame_index: int, quality: float, view: object) -> tuple[object, float] | None:
        """Offer this frame's view of ``track``; returns (view, quality) to embed now, or None.

        While the track settles the best view is kept and returned once the track is ``settle_frames``
        old (or at once if it is ``good_enough``); later views must pass :meth:`view_bar`. The caller
        calls :meth:`mark_embedded` when it embeds the returned view."""
        st = self.settings
        if st.embed_every_frame:
            return view, quality
        if not self.reportable(track) or track.embeds >= st.max_embeds:
            return None
        if track.embeds == 0:
            if quality >= st.min_quality and quality > track.best_quality:  # NaN (not measured) never passes
                track.best, track.best_quality = view, quality
            settled = frame_index - track.first_frame + 1 >= st.settle_frames or track.best_quality >= st.good_enough
            if track.best is not None and settled:
                out = (track.best, track.best_quality)
                track.best, track.best_quality = None, -1.0
                return out
            return None
        return (view, quality) if quality >= self.view_bar(track, frame_index) else None

    def take_unsettled(self) -> list[tuple[Track, object, float]]:
        """(track, best view, quality) of tracks missed on the last frame before they settled: embed
        those views now rather than lose a face that was only seen briefly."""
        out = []
        for t in self.unsettled:
            if t.best is not None and t.embeds == 0:
                out.append((t, t.best, t.best_quality))
                t.best, t.best_quality = None, -1.0
        self.unsettled = []
        return out

    def mark_embedded(self, track: Track, quality: float, frame_index: int | None = None) -> EmbedState:
        """Count an embedding of ``track``; returns the state before, for :meth:`embed_dropped`."""
        before = EmbedState(track.embeds, track.embedded_quality, track.last_embed_frame)
        track.embeds += 1
        track.embedded_quality = quality if track.embedded_quality is None else max(track.embedded_quality, quality)
        track.last_embed_frame = track.last_frame if frame_index is None else frame_index
        return before

    def embed_dropped(self, track: Track, before: EmbedState) -> None:
        """Undo :meth:`mark_embedded` for an embedding that was never computed (dropped under load): the
        track may be embedded again from a later view."""
        if track.embeds == before.embeds + 1:
            track.embeds, track.embedded_quality, track.last_embed_frame = before.embeds, before.embedded_quality, before.last_embed_frame

    def set_embedding(self, track: Track, embedding: np.ndarray) -> None:
        track.embedding = np.asarray(embedding, dtype=np.float32)
