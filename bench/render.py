"""Renderer speed at 640×480 (run on demand): frames/s per core, cold (sprite misses) and warm, with and
without mp4 writing.

    python bench/render.py [--seconds 20] [--camera cam-security-1 ...] [--population 1500]

"Per core" = frames / CPU seconds of this process (time.process_time), which does not depend on other
load on a shared machine; wall-clock frames/s is printed beside it. Target: ≥ 50 frames/s per core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from scenario.render import CameraRenderer  # noqa: E402
from scenario.world import build_world, load_spec  # noqa: E402

cv2.setNumThreads(1)


def run(r: CameraRenderer, frames: int, writer: cv2.VideoWriter | None = None) -> tuple[float, float, int]:
    c0, w0, faces = time.process_time(), time.perf_counter(), 0
    for i in range(frames):
        frame, truth = r.render(i)
        faces += len(truth)
        if writer is not None:
            writer.write(frame)
    return time.process_time() - c0, time.perf_counter() - w0, faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--camera", action="append", default=None)
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--population", type=int, default=None, help="override the population size (crowd level)")
    args = ap.parse_args()
    spec = load_spec(args.scenario)
    if args.population:
        spec = spec.model_copy(update={"population": spec.population.model_copy(update={"size": args.population})})
    world = build_world(spec)
    print(f"scenario {spec.name}, {len(world.travellers)} travellers")
    ids = args.camera or [c.id for c in world.cameras]
    print(
        f"{'camera':20s} {'res':>8s} {'frames':>6s} {'faces/fr':>8s} {'cold fps/core':>13s} {'warm fps/core':>13s} "
        f"{'+mp4 fps/core':>13s} {'wall fps':>8s} {'miss %':>6s}"
    )
    tot_f, tot_c = 0, 0.0
    for cid in ids:
        r = CameraRenderer(world, cid)
        n = int(round(args.seconds * r.fps))
        cold_c, cold_w, faces = run(r, n)
        misses = r.cache.misses / max(r.cache.misses + r.cache.hits, 1)
        warm_c, _, _ = run(r, n)
        with tempfile.TemporaryDirectory() as d:
            w = cv2.VideoWriter(str(Path(d) / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), r.fps, r.size)
            r2 = CameraRenderer(world, cid)
            mp4_c, mp4_w, _ = run(r2, n, w)
            w.release()
        tot_f += n
        tot_c += cold_c
        W, H = r.size
        print(
            f"{cid:20s} {W}x{H:<4d} {n:6d} {faces / max(n, 1):8.2f} {n / cold_c:13.1f} {n / warm_c:13.1f} "
            f"{n / mp4_c:13.1f} {n / cold_w:8.1f} {misses * 100:6.1f}"
        )
    print(f"all cameras, cold (incl. sprite rendering): {tot_f / tot_c:.1f} frames/s per core (target ≥ 50)")


if __name__ == "__main__":
    main()
