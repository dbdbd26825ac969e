"""Accuracy and compliance of one run against the scenario's ground truth (event id → traveller).

A *genuine* event is one whose traveller is enrolled and has active consent for the zone's purpose at
capture time: the only events the system may identify. Everything else must come out unknown or refused;
a match on such an event is a false accept, and a match that names a non-consented traveller is a leak.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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
        matched = m.decision in ("match", "verified")  # 1:N identification or e-gate 1:1 acceptance
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


# ------------------------------------------------------------------ video mode: published sightings → ground truth

SIZE_BINS = (20.0, 40.0, 60.0, 100.0, float("inf"))  # face width buckets (scored gt faces are >= 20 px wide)
GROUP_KEYS = ("nationality_group", "sex", "age_band")
LINK_IOU = 0.5


@dataclass
class CameraTruth:
    """One rendered camera: MOT ground truth by 0-based frame position (boxes 0-based, like the edge's)."""

    camera_id: str
    zone: str
    fps: float
    length: int  # frames in the video
    rows: np.ndarray  # (n, 7): position, gt id, x, y, w, h, counts
    traveller: dict[int, str]  # gt id (traveller number) -> traveller id

    def at(self, position: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.rows[:, 0], [position, position + 1])
        return self.rows[lo:hi]


@dataclass
class RenderTruth:
    """``paxsim scenario render`` output: the manifest's identities (demographics, consent, itinerary) and
    the ground truth of every camera."""

    folder: Path
    seed: int
    identities: dict[str, dict]
    cameras: dict[str, CameraTruth]

    @classmethod
    def load(cls, folder: Path) -> RenderTruth:
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{folder}: no manifest.json (expected `paxsim scenario render` output)")
        manifest = json.loads(manifest_path.read_text())
        specs = {c["id"]: c for c in manifest["cameras"]}
        cams: dict[str, CameraTruth] = {}
        for gt in sorted(folder.glob("*/gt/gt.txt")):
            cid = gt.parent.parent.name
            ini = configparser.ConfigParser()
            ini.read(gt.parent.parent / "seqinfo.ini")
            seq = ini["Sequence"]
            raw = np.loadtxt(gt, delimiter=",", ndmin=2) if gt.stat().st_size else np.zeros((0, 9))
            rows = (
                np.column_stack([raw[:, 0] - 1, raw[:, 1], raw[:, 2] - 1, raw[:, 3] - 1, raw[:, 4], raw[:, 5], raw[:, 6]])
                if len(raw)
                else np.zeros((0, 7))
            )
            rows = rows[np.argsort(rows[:, 0], kind="stable")]
            names = {
                int(n): tid
                for n, tid in (line.split(",")[1:3] for line in (gt.parent / "details.csv").read_text().splitlines()[1:] if line)
            }
            cams[cid] = CameraTruth(cid, specs.get(cid, {}).get("zone", ""), float(seq["frameRate"]), int(seq["seqLength"]), rows, names)
        return cls(folder, int(manifest["seed"]), {i["id"]: i for i in manifest["identities"]}, cams)

    def groups(self, traveller_id: str) -> dict[str, str]:
        demo = self.identities.get(traveller_id, {}).get("demographics", {})
        return {k: str(demo.get(k, "?")) for k in GROUP_KEYS}


@dataclass(frozen=True, slots=True)
class Replica:
    """A published camera id replaying a rendered camera, ``offset`` frames into the video (staggered start)."""

    camera_id: str
    video_camera: str
    offset: int = 0


def _log_lines(path: Path) -> list[dict]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line (process stopped mid-write)
            continue
    return out


def read_track_log(path: Path) -> list[dict]:
    """The evaluation edge's per-observation log (one JSON object a line: c, i, t, k, b = camera, frame index,
    capture time, track id, box); a torn last line (process stopped mid-write) is skipped."""
    return [r for r in _log_lines(path) if "k" in r]


def read_analysed_frames(path: Path) -> dict[str, set[int]]:
    """Camera → indices of the frames its edge analysed (the log's frame lines), faces or not."""
    out: dict[str, set[int]] = {}
    for r in _log_lines(path):
        if r.get("frame"):
            out.setdefault(r["c"], set()).add(int(r["i"]))
    return out


def live_camera_perception(log_path: Path, edge_camera: str, scene_camera: str, world, min_px: float = 30.0) -> dict | None:
    """How the real edge saw a live synthetic camera: detection recall (faces >= ``min_px`` and >= 60 px),
    precision and IDF1 over the frames it analysed (their truth re-rendered), and how many it analysed."""
    from edge.evaluate import detection_recall, mot_frame, tracking_metrics
    from scenario.render import CameraRenderer

    frames = sorted(read_analysed_frames(log_path).get(edge_camera, ()))
    if not frames:
        return None
    renderer = CameraRenderer(world, scene_camera)
    gt_rows = []
    for i in frames:
        for f in renderer.render(i)[1]:
            gt_rows.append((i + 1, f.track_id, *f.box, 1.0 if f.counts else 0.0))
    gt = mot_frame(gt_rows)
    dt = mot_frame([(r["i"] + 1, r["k"], *r["b"], 1.0) for r in read_track_log(log_path) if r["c"] == edge_camera])
    low, high = detection_recall(gt, dt, min_px=min_px), detection_recall(gt, dt, min_px=60.0)
    return _finite(
        {
            "camera": scene_camera,
            "frames_analysed": len(frames),
            f"recall_ge_{int(min_px)}px": low.recall_at_least_min,
            f"faces_ge_{int(min_px)}px": low.faces_at_least_min,
            "recall_ge_60px": high.recall_at_least_min,
            "precision": low.precision,
            f"idf1_ge_{int(min_px)}px": tracking_metrics(gt, dt, min_px=min_px)["idf1"],
        }
    )


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    x2, y2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2]), np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - np.maximum(box[0], boxes[:, 0]), 0, None) * np.clip(y2 - np.maximum(box[1], boxes[:, 1]), 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def link_sightings(sightings: Iterable, log: list[dict], truth: RenderTruth, replicas: dict[str, Replica]) -> tuple[dict[str, str], dict]:
    """event id → traveller id for every published sighting whose box overlaps a ground-truth face of its frame
    (IoU ≥ 0.5). The frame comes from the track log: (camera, capture time, track id) → frame index, and the
    video position is ``(index + offset) mod length``. Returns the mapping and counts of what could not be linked."""
    frames = {(r["c"], r["t"], r["k"]): r["i"] for r in log}
    out: dict[str, str] = {}
    stats = {"sightings": 0, "linked": 0, "no_frame": 0, "no_truth": 0}
    for s in sightings:
        stats["sightings"] += 1
        rep = replicas.get(s.camera_id)
        cam = truth.cameras.get(rep.video_camera) if rep else None
        index = frames.get((s.camera_id, s.captured_at, s.track_id))
        if cam is None or index is None:
            stats["no_frame"] += 1
            continue
        gt = cam.at((index + rep.offset) % cam.length)  # type: ignore[union-attr]
        iou = _iou(np.asarray(s.box, float), gt[:, 2:6])
        if iou.size == 0 or iou.max() < LINK_IOU:
            stats["no_truth"] += 1
            continue
        out[s.event_id] = cam.traveller.get(int(gt[int(iou.argmax()), 1]), f"T{int(gt[int(iou.argmax()), 1]):05d}")
        stats["linked"] += 1
    return out, stats


def camera_tracking(log: list[dict], truth: RenderTruth, replicas: dict[str, Replica]) -> dict[str, dict]:
    """Per published camera: detection recall by face width and IDF1 / MOTA (motmetrics) of the edge's tracks
    over the frames it replayed, loops unrolled (each loop's travellers are new ground-truth identities).
    Frames the edge dropped under load count as missed."""
    import pandas as pd

    from edge.evaluate import detection_recall, tracking_metrics

    by_cam: dict[str, list[dict]] = {}
    for r in log:
        by_cam.setdefault(r["c"], []).append(r)
    cols = ["X", "Y", "Width", "Height", "Confidence"]
    out: dict[str, dict] = {}
    for cid, rows in sorted(by_cam.items()):
        rep = replicas.get(cid)
        cam = truth.cameras.get(rep.video_camera) if rep else None
        if cam is None or not rows:
            continue
        g = np.array([r["i"] + rep.offset for r in rows])  # type: ignore[union-attr]
        dt = pd.DataFrame([[gi + 1, r["k"], *r["b"], 1.0] for gi, r in zip(g, rows)], columns=["FrameId", "Id", *cols]).set_index(
            ["FrameId", "Id"]
        )
        lo, hi = int(g.min()), int(g.max())
        parts = []
        for loop in range(lo // cam.length, hi // cam.length + 1):
            base = loop * cam.length
            sel = cam.rows[(cam.rows[:, 0] + base >= lo) & (cam.rows[:, 0] + base <= hi)]
            if len(sel):
                parts.append(np.column_stack([sel[:, 0] + base + 1, sel[:, 1] + 100_000 * loop, sel[:, 2:6], sel[:, 6]]))
        gtrows = np.vstack(parts) if parts else np.zeros((0, 7))
        gt = pd.DataFrame(gtrows, columns=["FrameId", "Id", *cols]).astype({"FrameId": int, "Id": int}).set_index(["FrameId", "Id"])
        det = detection_recall(gt, dt, bins=SIZE_BINS, min_px=60.0)
        # at IoU 0.3 too: a 20-40 px face's box a few pixels off the renderer's fails IoU 0.5 without being a false face
        loose = detection_recall(gt, dt, bins=SIZE_BINS, min_px=60.0, iou=0.3)
        trk = tracking_metrics(gt, dt)
        out[cid] = _finite(
            {
                "frames": hi - lo + 1,
                "detection": det.as_dict(),
                "precision_iou03": loose.precision,
                "idf1": trk["idf1"],
                "mota": trk["mota"],
                "id_switches": int(trk["num_switches"]),
                "gt_identities": int(trk["num_unique_objects"]),
                "hota": hota(gt, dt),
            }
        )
    return out


def hota(gt, dt) -> float | None:
    """HOTA (mean over the IoU thresholds α = 0.05…0.95) by TrackEval when it is installed, else None.

    Same preprocessing as the motmetrics figures: only scored faces are ground truth, and tracks on don't-care
    faces are removed first."""
    try:
        from trackeval.metrics import HOTA
    except ImportError:
        return None
    from edge.evaluate import _drop_dontcare, _iou_matrix

    dt = _drop_dontcare(gt, dt, LINK_IOU)
    care = gt[gt["Confidence"] >= 1]
    frames = sorted(set(care.index.get_level_values("FrameId")) | set(dt.index.get_level_values("FrameId")))
    if not frames:
        return None
    gid = {v: i for i, v in enumerate(sorted(set(care.index.get_level_values("Id"))))}
    tid = {v: i for i, v in enumerate(sorted(set(dt.index.get_level_values("Id"))))}
    g_by = {int(f): grp for f, grp in care.groupby(level="FrameId")}
    d_by = {int(f): grp for f, grp in dt.groupby(level="FrameId")} if len(dt) else {}
    empty = care.iloc[:0]
    data: dict = {
        "num_timesteps": len(frames),
        "num_gt_ids": len(gid),
        "num_tracker_ids": len(tid),
        "num_gt_dets": len(care),
        "num_tracker_dets": len(dt),
        "gt_ids": [],
        "tracker_ids": [],
        "similarity_scores": [],
    }
    for f in frames:
        g, d = g_by.get(int(f), empty), d_by.get(int(f), empty)
        data["gt_ids"].append(np.array([gid[i] for i in g.index.get_level_values("Id")], int))
        data["tracker_ids"].append(np.array([tid[i] for i in d.index.get_level_values("Id")], int))
        data["similarity_scores"].append(
            _iou_matrix(g[["X", "Y", "Width", "Height"]].to_numpy(float), d[["X", "Y", "Width", "Height"]].to_numpy(float))
        )
    return float(np.mean(HOTA().eval_sequence(data)["HOTA"]))


def _finite(x):
    """NaN (an empty bucket) → None, so the report's JSON is standard JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and x != x else x


def recall_by_size(per_camera: dict[str, dict]) -> list[dict]:
    """Detection recall per face-width bucket, summed over cameras."""
    acc: dict[str, list[int]] = {}
    for cam in per_camera.values():
        for b in cam["detection"]["bins"]:
            f = acc.setdefault(b["range"], [0, 0])
            f[0] += b["faces"]
            f[1] += b["found"]
    return [{"range": k, "faces": n, "found": f, "recall": f / n if n else None} for k, (n, f) in acc.items()]


def transition_share(updates: Iterable, truth_events: dict[str, str], truth: RenderTruth) -> dict:
    """Zone transitions (track updates with a new zone) whose event is linked to a traveller: correct when the
    matcher named that traveller and the traveller's itinerary visits the previous zone before this one."""
    n = ok = 0
    for u in updates:
        who = truth_events.get(u.event_id)
        if who is None or not u.prev_zone or u.prev_zone == u.zone:
            continue
        n += 1
        zones = [v["zone"] for v in truth.identities.get(who, {}).get("itinerary", [])]
        ok += u.subject_id == who and u.zone in zones and u.prev_zone in zones[: zones.index(u.zone)]
    return {"transitions": n, "correct": ok, "share": ok / n if n else None}


def by_group(
    matches: list[Match], updates: list, truth_events: dict[str, str], truth: RenderTruth, allowed: Callable[[str, str, str, float], bool]
) -> dict:
    """rank-1 / FRR / FAR / leaks and the correct-transition share per demographic group (of the true traveller)."""
    out: dict[str, dict] = {}
    for key in GROUP_KEYS:
        values = sorted({truth.groups(who)[key] for who in truth_events.values()})
        out[key] = {}
        for v in values:
            sub = {e: who for e, who in truth_events.items() if truth.groups(who)[key] == v}
            row = score(matches, sub, allowed).as_dict()
            row["transitions"] = transition_share(updates, sub, truth)
            out[key][v] = row
    return out


def video_accuracy(
    sightings: list,
    matches: list[Match],
    updates: list,
    log: list[dict],
    truth: RenderTruth,
    replicas: dict[str, Replica],
    allowed: Callable[[str, str, str, float], bool],
) -> dict:
    """Everything the load report shows against the rendered ground truth (pseudonyms already resolved)."""
    events, link = link_sightings(sightings, log, truth, replicas)
    cams = camera_tracking(log, truth, replicas)
    overall = score(matches, events, allowed).as_dict()
    return {
        **overall,
        "link": link,
        "transitions": transition_share(updates, events, truth),
        "recall_by_size": recall_by_size(cams),
        "cameras": cams,
        "groups": by_group(matches, updates, events, truth, allowed),
        "tracking_metrics": "IDF1 / MOTA: motmetrics; HOTA: TrackEval"
        + ("" if any(c["hota"] is not None for c in cams.values()) else " (not installed: HOTA n/a)"),
    }


# Enrolment poses (yaw, pitch in degrees; pitch < 0: seen from above eye level). The airport's face cameras hang at
# 1.75-1.9 m and look down at travellers of 1.5-1.9 m, so the views the edge embeds are pitched -8...-15 degrees (more for
# shorter travellers, i.e. more for women) and turned up to 25 degrees; one frontal portrait misses them and the nearest
# other enrolment (median 0.30 away in this synthetic population) wins. A few views, as an e-gate kiosk camera would
# capture them, close the gap (docs/load.md, "Accuracy from video").
ENROL_POSES: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-10.0, 0.0), (10.0, 0.0), (0.0, -12.0), (-10.0, -12.0), (10.0, -12.0))
_POSES_KEY = "__poses__"  # cache entry: the poses the cached views were rendered at (absent in frontal-only caches)


def enrolment_views(identities: Iterable, poses: Iterable[tuple[float, float]] = ENROL_POSES, embedder=None) -> list[np.ndarray]:
    """Descriptors ``(k, 128)`` float32, by the real embedder, of each identity's enrolment portraits at ``poses``
    (evenly lit, 120 px face; pose (0, 0) is ``scenario.calibration.enrol_view``). Views where no face is detected
    are left out, so ``k`` may be smaller than the number of poses, or 0."""
    from scenario.calibration import DIM, ENROL_FACE_PX, ENROL_LIGHT
    from scenario.faces import build, portrait, render_view
    from scenario.faces.dlibface import default_embedder
    from scenario.faces.jitter import scale_for_face_px

    emb = embedder or default_embedder()
    poses = list(poses)
    out = []
    for ident in identities:
        model = build(ident)
        per_px = scale_for_face_px(model, ENROL_FACE_PX)
        vecs = []
        for yaw, pitch in poses:
            view = render_view(model, yaw, pitch, 0.0, ENROL_LIGHT, scale=per_px)
            img, _ = portrait(view, np.random.default_rng(ident.seed), pad=0.5)
            r = emb.detect_embed(img, 1)
            if r is not None and np.isfinite(r[1]).all():
                vecs.append(np.asarray(r[1], np.float32))
        out.append(np.asarray(vecs, np.float32).reshape(-1, DIM))
    return out


def template(views: np.ndarray) -> np.ndarray:
    """One enrolment vector from several views of a subject: their mean (for galleries that hold one vector a subject)."""
    return np.asarray(views, np.float32).reshape(-1, views.shape[-1]).mean(axis=0)


def read_enrolment_cache(
    cache: Path, seen: Iterable[str], poses: Iterable[tuple[float, float]] = ENROL_POSES
) -> dict[str, np.ndarray] | None:
    """Cached views (traveller id → ``(k, 128)``) when the cache holds every traveller in ``seen`` rendered at
    ``poses``; None otherwise (missing, older frontal-only cache, other poses, unreadable)."""
    if not cache.exists():
        return None
    try:
        with np.load(cache) as z:
            have = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None
    cached_poses, want = have.pop(_POSES_KEY, None), np.asarray(list(poses), float).reshape(-1, 2)
    if cached_poses is None or cached_poses.shape != want.shape or not np.allclose(cached_poses, want):
        return None
    if not set(seen) <= set(have):
        return None
    return {k: v.reshape(-1, v.shape[-1]) for k, v in have.items()}


def travellers_seen(truth: RenderTruth) -> list[str]:
    """Every traveller with a ground-truth face in any camera, don't-care faces included: :func:`link_sightings`
    links a sighting to any ground-truth face, so each of them must be enrolled (a traveller seen only partly
    hidden or small would otherwise be unidentifiable by construction)."""
    return sorted({cam.traveller.get(int(n), f"T{int(n):05d}") for cam in truth.cameras.values() for n in cam.rows[:, 1]})


def video_enrolment(truth: RenderTruth, travellers: int, scenario: Path | None, cache: Path, views: bool = False) -> dict[str, np.ndarray]:
    """Enrolment of every traveller the rendered videos show (:func:`travellers_seen`), by the real embedder from portraits at
    :data:`ENROL_POSES`. The virtual model enrols travellers without a bank identity with a synthetic vector that
    their rendered face would never match; a video run must enrol what the camera sees.

    Returns traveller id → the ``(k, 128)`` views with ``views`` (what the load run enrols: one gallery row a
    view, the matcher scoring a subject by its closest view: the better choice, measured in docs/load.md), else
    one vector, the mean of the views (:func:`template`, for a gallery of one vector a subject). Travellers none of whose views is
    detected are left out. Cached in ``cache`` (an .npz of the views keyed by traveller id)."""
    seen = travellers_seen(truth)
    got = read_enrolment_cache(cache, seen)
    if got is None:
        from scenario.world import load_world

        world = load_world(scenario, seed=truth.seed, travellers=travellers)
        by_id = {t.id: t for t in world.travellers}
        ids = [i for i in seen if i in by_id]
        got = {i: v for i, v in zip(ids, enrolment_views([by_id[i].identity for i in ids])) if len(v)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **got, **{_POSES_KEY: np.asarray(ENROL_POSES, float)})
    return dict(got) if views else {k: template(v) for k, v in got.items()}
