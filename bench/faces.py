"""Acceptance numbers of the synthetic faces against the real embedder (run on demand, ~2-4 min).

    python bench/faces.py                 # bank identities × 10 jittered renders
    python bench/faces.py --random 50     # 50 random (non-optimised) identities, for comparison
    python bench/faces.py --calibrate     # also write scenario/data/calibration.json (noise model)

Per render: dlib HOG (upsample 1 and 0) detection, ResNet descriptor, distance to every frontal enrolment.
Prints detection %, rank-1 % against one frontal enrolment, same/different-identity distances and the
threshold minimising the half total error, plus detection by skin-tone group.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenario.bank import EMBEDDINGS_FILE, load_bank, load_bank_embeddings  # noqa: E402
from scenario.calibration import CALIBRATION_FILE, NoiseModel, measure  # noqa: E402
from scenario.faces import random_identity  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=int, default=10)
    ap.add_argument("--random", type=int, default=0, help="use N random identities instead of the bank")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate", action="store_true", help=f"write {CALIBRATION_FILE}")
    ap.add_argument("--dump", type=Path, default=None, help="save per-render results (npz) for analysis")
    ap.add_argument("--bank-dir", type=Path, default=EMBEDDINGS_FILE.parent, help="directory of the bank files")
    args = ap.parse_args()

    if args.random:
        idents = [random_identity(10_000 + i) for i in range(args.random)]
        base = None
        label = f"random, {len(idents)} ids"
    else:
        idents = load_bank(args.bank_dir / "bank.json")
        emb, seeds = load_bank_embeddings(args.bank_dir / EMBEDDINGS_FILE.name)
        assert [i.seed for i in idents] == list(seeds), "bank.json and bank_embeddings.npz disagree"
        base = emb
        label = f"bank, {len(idents)} ids"
    t0 = time.time()
    m = measure(idents, renders=args.renders, seed=args.seed, base=base)
    model = NoiseModel.from_measurement(m)
    s = model.stats
    print(f"{label} × {args.renders} renders (yaw ±25°, pitch ±10°, roll ±8°, light, blur, noise, JPEG); {time.time() - t0:.0f} s")
    print(f"  enrolments detected        {m.enrolled.mean() * 100:.1f} %")
    print(f"  dlib HOG detected, up1/up0 {s['hog_up1_detected'] * 100:.1f} % / {s['hog_up0_detected'] * 100:.1f} %")
    print(f"  rank-1 vs one frontal enrolment {s['rank1'] * 100:.1f} %")
    print(
        f"  same-id distance mean {s['same_mean']:.3f} (p95 {s['same_p95']:.3f}); "
        f"different-id mean {s['diff_mean']:.3f} (p05 {s['diff_p05']:.3f})"
    )
    print(
        f"  threshold {s['threshold']:.3f}: false match {s['fmr_at_threshold'] * 100:.2f} %, "
        f"false non-match {s['fnmr_at_threshold'] * 100:.2f} %"
    )
    for thr in (0.5, 0.55, 0.6):
        same, diff = m.same(), m.different()
        print(f"  at {thr:.2f}: false match {np.mean(diff < thr) * 100:.2f} %, false non-match {np.mean(same >= thr) * 100:.2f} %")
    print(f"  noise model sigma per dim {model.sigma_per_dim:.4f}")
    tones = np.array([idents[k].skin_tone_scale for k in m.identity])
    for lo, hi in ((1, 2), (3, 4), (5, 6)):
        sel = (tones >= lo) & (tones <= hi)
        if sel.any():
            print(f"  skin tone {lo}-{hi}: {sel.sum():3d} renders, detected {m.detected_up1[sel].mean() * 100:.1f} %")
    if args.dump:
        np.savez(args.dump, identity=m.identity, up1=m.detected_up1, up0=m.detected_up0, distances=m.distances)
    if args.calibrate:
        if args.random:
            sys.exit("--calibrate needs the bank (no --random)")
        target = args.bank_dir / CALIBRATION_FILE.name
        model.save(target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
