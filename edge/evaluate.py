"""Score detections and tracks against MOTChallenge ground truth (e.g. ``paxsim scenario render`` output).

- :func:`detection_recall`: share of ground-truth faces found (IoU ≥ 0.5), per face-width bin, plus
  precision. Ground-truth rows with ``conf == 0`` are "don't care": finding them is neither a hit nor a
  false positive.
- :func:`tracking_metrics`: IDF1, IDP, IDR, MOTA, ID switches with ``motmetrics``; detections on
  don't-care faces are removed first (the usual MOTChallenge preprocessing).

Both files are MOTChallenge text (``frame,id,x,y,w,h,conf,…``); see :func:`load_mot`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import motmetrics as mm
import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

DEFAULT_BINS = (20, 40, 60, 80, 120, math.inf)


MOT_COLUMNS = ["FrameId", "Id", "X", "Y", "Width", "Height", "Confidence", "ClassId", "Visibility"]
MOT_TYPES = {"FrameId": int, "Id": int, "X": float, "Y": float, "Width": float, "Height": float, "Confidence": float}


def mot_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """(frame, id, x, y, w, h, conf) rows, in memory, as the DataFrame :func:`load_mot` reads from a file."""
    df = pd.DataFrame([(*r, 1, 1.0) for r in rows], columns=MOT_COLUMNS)
    return df.astype(MOT_TYPES).set_index(["FrameId", "Id"])


def load_mot(path: str | Path) -> pd.DataFrame:
    """A MOT text file (``frame,id,x,y,w,h,conf[,class,visibility,…]``) as a DataFrame indexed by
    (FrameId, Id), the layout motmetrics uses. Missing trailing columns are filled (class 1, visibility 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such MOT file: {path}")
    if path.stat().st_size == 0:
        df = pd.DataFrame(columns=MOT_COLUMNS)
    else:
        df = pd.read_csv(path, header=None, sep=r"[\s,]+", engine="python")
        if df.shape[1] < 7:
            raise ValueError(f"{path}: a MOT line needs at least 7 fields (frame,id,x,y,w,h,conf)")
        df = df.iloc[:, :9]
        df.columns = MOT_COLUMNS[: df.shape[1]]
        for col, default in (("ClassId", 1), ("Visibility", 1.0)):
            if col not in df:
                df[col] = default
    return df.astype(MOT_TYPES).set_index(["FrameId", "Id"])


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes (x, y, w, h) in rows of a and b."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _match(gt: np.ndarray, dt: np.ndarray, thr: float) -> list[tuple[int, int]]:
    m = _iou_matrix(gt, dt)
    if m.size == 0:
        return []
    r, c = linear_sum_assignment(-m)
    return [(i, j) for i, j in zip(r, c) if m[i, j] >= thr]


@dataclass
class SizeBin:
    lo: float
    hi: float
    faces: int
    found: int

    @property
    def recall(self) -> float:
        return self.found / self.faces if self.faces else float("nan")

    @property
    def label(self) -> str:
        return f"{int(self.lo)}-{int(self.hi)} px" if math.isfinite(self.hi) else f">= {int(self.lo)} px"


@dataclass
class DetectionReport:
    bins: list[SizeBin]
    detections: int
    false_positives: int
    min_px: float
    faces_at_least_min: int
    found_at_least_min: int

    @property
    def recall_at_least_min(self) -> float:
        return self.found_at_least_min / self.faces_at_least_min if self.faces_at_least_min else float("nan")

    @property
    def precision(self) -> float:
        return 1.0 - self.false_positives / self.detections if self.detections else float("nan")

    def as_dict(self) -> dict:
        return {
            "bins": [{"range": b.label, "faces": b.faces, "found": b.found, "recall": b.recall} for b in self.bins],
            f"recall_ge_{int(self.min_px)}px": self.recall_at_least_min,
            "faces_ge_min": self.faces_at_least_min,
            "detections": self.detections,
            "false_positives": self.false_positives,
            "precision": self.precision,
        }


def _frames(df: pd.DataFrame) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    if len(df) == 0:
        return out
    for fid, grp in df.groupby(level="FrameId"):
        out[int(fid)] = grp[["X", "Y", "Width", "Height"]].to_numpy(float)
    return out


def detection_recall(
    gt: pd.DataFrame, dt: pd.DataFrame, bins: Sequence[float] = DEFAULT_BINS, iou: float = 0.5, min_px: float = 60.0
) -> DetectionReport:
    """Recall per face-width bin (``bins`` are edges) and precision of ``dt`` against ``gt``."""
    care = gt[gt["Confidence"] >= 1]
    dontcare = gt[gt["Confidence"] < 1]
    care_f, dc_f, dt_f = _frames(care), _frames(dontcare), _frames(dt)
    edges = list(bins)
    counts = [[0, 0] for _ in range(len(edges) - 1)]
    n_min = f_min = fps = ndet = 0
    for fid in set(care_f) | set(dt_f):
        g = care_f.get(fid, np.zeros((0, 4)))
        d = dt_f.get(fid, np.zeros((0, 4)))
        ndet += len(d)
        matched = _match(g, d, iou)
        hit = {i for i, _ in matched}
        used = {j for _, j in matched}
        for i, box in enumerate(g):
            w = box[2]
            for k in range(len(edges) - 1):
                if edges[k] <= w < edges[k + 1]:
                    counts[k][0] += 1
                    counts[k][1] += i in hit
            if w >= min_px:
                n_min += 1
                f_min += i in hit
        rest = [j for j in range(len(d)) if j not in used]
        if rest:
            dc = dc_f.get(fid, np.zeros((0, 4)))
            ignored = {rest[j] for _, j in _match(dc, d[rest], iou)} if len(dc) else set()
            fps += len(rest) - len(ignored)
    sb = [SizeBin(edges[k], edges[k + 1], c[0], c[1]) for k, c in enumerate(counts)]
    return DetectionReport(sb, ndet, fps, min_px, n_min, f_min)


def _drop_dontcare(gt: pd.DataFrame, dt: pd.DataFrame, iou: float) -> pd.DataFrame:
    """Remove detections that match a don't-care face and no counted face."""
    dontcare = _frames(gt[gt["Confidence"] < 1])
    if not dontcare or len(dt) == 0:
        return dt
    care = _frames(gt[gt["Confidence"] >= 1])
    keep = np.ones(len(dt), dtype=bool)
    frame_ids = dt.index.get_level_values("FrameId").to_numpy()
    boxes = dt[["X", "Y", "Width", "Height"]].to_numpy(float)
    for fid, dc in dontcare.items():
        rows = np.flatnonzero(frame_ids == fid)
        if len(rows) == 0:
            continue
        matched = {j for _, j in _match(care.get(fid, np.zeros((0, 4))), boxes[rows], iou)}
        free = [r for k, r in enumerate(rows) if k not in matched]
        for _, j in _match(dc, boxes[free], iou):
            keep[free[j]] = False
    return dt[keep]


def tracking_metrics(gt: pd.DataFrame, dt: pd.DataFrame, iou: float = 0.5, min_px: float = 0.0) -> dict:
    """motmetrics summary (idf1, idp, idr, mota, num_switches, …) for one sequence.

    ``min_px`` > 0 also treats ground-truth faces narrower than that as don't care."""
    gt = gt.copy()
    if min_px > 0:
        gt.loc[gt["Width"] < min_px, "Confidence"] = 0
    dt = _drop_dontcare(gt, dt, iou)
    care = gt[gt["Confidence"] >= 1]
    acc = mm.MOTAccumulator(auto_id=False)
    frames = sorted(set(care.index.get_level_values("FrameId")) | set(dt.index.get_level_values("FrameId")))
    g_by = {int(f): grp for f, grp in care.groupby(level="FrameId")}
    d_by = {int(f): grp for f, grp in dt.groupby(level="FrameId")} if len(dt) else {}
    empty = care.iloc[:0]
    for f in frames:
        g, d = g_by.get(int(f), empty), d_by.get(int(f), empty)
        m = _iou_matrix(g[["X", "Y", "Width", "Height"]].to_numpy(float), d[["X", "Y", "Width", "Height"]].to_numpy(float))
        dist = np.where(m >= iou, 1.0 - m, np.nan)  # motmetrics: NaN = may not be paired
        acc.update(g.index.get_level_values("Id").tolist(), d.index.get_level_values("Id").tolist(), dist, frameid=int(f))
    mh = mm.metrics.create()
    names = [
        "idf1",
        "idp",
        "idr",
        "mota",
        "motp",
        "num_switches",
        "num_unique_objects",
        "mostly_tracked",
        "num_false_positives",
        "num_misses",
    ]
    summary = mh.compute(acc, metrics=names, name="seq")
    return {k: float(summary[k].iloc[0]) for k in names}


def to_zero_based(df: pd.DataFrame) -> pd.DataFrame:
    """A MOTChallenge file's boxes (x, y 1-based, as ``paxsim scenario render`` writes gt.txt) in 0-based pixels."""
    out = df.copy()
    out["X"] -= 1.0
    out["Y"] -= 1.0
    return out


def evaluate(gt_path: str | Path, det_path: str | Path, min_px: float = 60.0, det_one_based: bool = False) -> dict:
    """Both reports for one camera: detection recall by size and tracking metrics (all and >= min_px).

    ``gt_path`` is MOTChallenge ground truth (x, y 1-based); ``det_path`` holds boxes in 0-based pixels as
    ``paxsim detect`` writes them (``det_one_based``: a MOTChallenge-convention file). Both are compared 0-based."""
    gt, dt = to_zero_based(load_mot(gt_path)), load_mot(det_path)
    if det_one_based:
        dt = to_zero_based(dt)
    return {
        "detection": detection_recall(gt, dt, min_px=min_px).as_dict(),
        "tracking": tracking_metrics(gt, dt),
        f"tracking_ge_{int(min_px)}px": tracking_metrics(gt, dt, min_px=min_px),
    }
