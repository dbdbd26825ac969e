"""Write a rendered scenario: mp4 per camera, MOTChallenge ground truth, seqinfo.ini and a manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2

from ..world import World
from .frames import CameraRenderer, FaceTruth
from .sprites import SpriteCache

GT_HEADER_DOC = "frame,id,x,y,w,h,conf,class,visibility  (MOTChallenge gt; frame and x, y 1-based; face box)"


def gt_line(frame_index: int, f: FaceTruth) -> str:
    x, y, w, h = f.box  # MOTChallenge boxes are 1-based (motmetrics subtracts 1 on load)
    return f"{frame_index + 1},{f.track_id},{x + 1},{y + 1},{w},{h},{int(f.counts)},1,{f.visibility:.3f}\n"


def details_line(frame_index: int, f: FaceTruth) -> str:
    bx, by, bw, bh = f.body
    return f"{frame_index + 1},{f.track_id},{f.traveller_id},{f.yaw:.2f},{f.pitch:.2f},{f.face_px:.1f},{bx},{by},{bw},{bh}\n"


def render_camera(
    world: World,
    camera_id: str,
    out: Path,
    seconds: float,
    cache: SpriteCache | None = None,
    progress: Callable[[int], None] | None = None,
    video: bool = True,
) -> dict:
    """Render one camera into ``out/<camera_id>/``; returns a summary (frames, faces)."""
    r = CameraRenderer(world, camera_id, cache)
    d = out / camera_id
    (d / "gt").mkdir(parents=True, exist_ok=True)
    frames = max(0, int(round(seconds * r.fps)))
    W, H = r.size
    writer = None
    if video:
        writer = cv2.VideoWriter(str(d / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), r.fps, (W, H))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4 to {d / 'video.mp4'}")
    faces = 0
    try:
        with open(d / "gt" / "gt.txt", "w") as gt, open(d / "gt" / "details.csv", "w") as det:
            det.write("frame,id,traveller_id,yaw,pitch,face_px,body_x,body_y,body_w,body_h\n")
            for i in range(frames):
                frame, truth = r.render(i)
                if writer is not None:
                    writer.write(frame)
                for f in truth:
                    gt.write(gt_line(i, f))
                    det.write(details_line(i, f))
                faces += len(truth)
                if progress:
                    progress(1)
    finally:
        if writer is not None:
            writer.release()
    (d / "seqinfo.ini").write_text(
        f"[Sequence]\nname={camera_id}\nimDir=video.mp4\nframeRate={r.fps:g}\nseqLength={frames}\nimWidth={W}\nimHeight={H}\nimExt=.mp4\n"
    )
    return {"camera": camera_id, "frames": frames, "faces": faces}


def write_manifest(world: World, out: Path, seconds: float, summaries: list[dict]) -> Path:
    m = world.manifest()
    m["rendered_seconds"] = seconds
    m["gt_format"] = GT_HEADER_DOC
    m["rendered"] = summaries
    p = out / "manifest.json"
    p.write_text(json.dumps(m, indent=1) + "\n")
    return p


def render_all(
    world: World,
    out: str | Path,
    seconds: float,
    cameras: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    video: bool = True,
) -> list[dict]:
    """Render every camera (or ``cameras``) for ``seconds`` into ``out`` and write the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = SpriteCache()
    ids = cameras or [c.id for c in world.cameras]
    summaries = [render_camera(world, cid, out, seconds, cache, progress, video) for cid in ids]
    write_manifest(world, out, seconds, summaries)
    return summaries
