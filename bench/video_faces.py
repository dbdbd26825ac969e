"""Face detection on rendered video, by face-size bin (run on demand, a few minutes).

    python bench/video_faces.py [--seconds 60] [--every 5] [--embed 150]

For every scored ground-truth face (MOTChallenge conf = 1: visibility ≥ 0.5, width ≥ 20 px, |yaw| ≤ 60°) in
every ``--every``-th frame of the face cameras: dlib HOG upsample 1 on the head region (face box grown by
60 % on each side, the edge's head-region detection) and HOG upsample 0 on the whole frame. A face counts as
found when a detection overlaps its box with IoU ≥ 0.3. With ``--embed N``, up to N head-region detections of
bank travellers are embedded and ranked against the bank's frontal enrolments (rank-1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenario.bank import load_bank_embeddings  # noqa: E402
from scenario.faces.dlibface import default_embedder  # noqa: E402
from scenario.render import CameraRenderer  # noqa: E402
from scenario.world import load_world  # noqa: E402

BINS = [(20, 40), (40, 60), (60, 80), (80, 120), (120, 10_000)]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--embed", type=int, default=0)
    ap.add_argument("--scenario", default=None)
    args = ap.parse_args()
    world = load_world(args.scenario)
    emb = default_embedder()
    bank_emb = load_bank_embeddings()[0] if args.embed else None
    rows = []  # (face_px, head-region found, whole-frame found)
    ranks = []
    t0 = time.time()
    for cam in [c for c in world.cameras if c.faces]:
        r = CameraRenderer(world, cam.id)
        n = int(round(args.seconds * r.fps))
        for i in range(0, n, args.every):
            frame, truth = r.render(i)
            scored = [f for f in truth if f.counts]
            if not scored:
                continue
            whole = emb.detect(frame, 0)
            H, W = frame.shape[:2]
            for f in scored:
                x, y, w, h = f.box
                gx, gy = int(0.6 * w), int(0.6 * h)
                x0, y0, x1, y1 = max(0, x - gx), max(0, y - gy), min(W, x + w + gx), min(H, y + h + gy)
                crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
                dets = [(dx + x0, dy + y0, dw, dh) for dx, dy, dw, dh in emb.detect(crop, 1)]
                hit = [d for d in dets if iou(d, f.box) >= 0.3]
                rows.append((f.face_px, bool(hit), any(iou(d, f.box) >= 0.3 for d in whole)))
                tr = world.travellers[f.track_id - 1]
                if bank_emb is not None and hit and tr.bank_index is not None and len(ranks) < args.embed:
                    e = emb.embed(frame, hit[0])
                    d = np.linalg.norm(bank_emb - e[None], axis=1)
                    ranks.append((int(np.argmin(d)) == tr.bank_index, float(d[tr.bank_index])))
    a = np.array(rows, dtype=np.float64)
    print(f"face cameras, {args.seconds:g} s, every {args.every}th frame: {len(a)} scored faces ({time.time() - t0:.0f} s)")
    print(f"{'face width px':>14s} {'faces':>6s} {'head-region HOG up1':>20s} {'whole-frame HOG up0':>20s}")
    for lo, hi in BINS + [(60, 10_000)]:
        sel = (a[:, 0] >= lo) & (a[:, 0] < hi)
        name = f"{lo}-{hi}" if hi < 10_000 else f">={lo}"
        if sel.any():
            print(f"{name:>14s} {int(sel.sum()):6d} {a[sel, 1].mean() * 100:19.1f}% {a[sel, 2].mean() * 100:19.1f}%")
    if ranks:
        rk = np.array(ranks)
        print(
            f"rank-1 of {len(rk)} video detections of bank travellers vs frontal enrolments: {rk[:, 0].mean() * 100:.1f} %, "
            f"own distance mean {rk[:, 1].mean():.3f} (p95 {np.percentile(rk[:, 1], 95):.3f})"
        )


if __name__ == "__main__":
    main()
