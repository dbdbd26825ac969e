"""``paxsim detect`` and ``paxsim edge evaluate``: the edge's detector and tracker on a video, stream or camera.

``detect`` takes what a camera's ``source`` takes (a file, a folder, ``rtsp://…``/``http://…``, ``webcam:N``)
or a camera YAML (the edge's camera list; ``--camera`` picks one), so it sees exactly what the edge sees.

``detect`` writes one line per tracked face in MOTChallenge det format
(``frame,id,x,y,w,h,conf,-1,-1,-1``; frames from 1, boxes in 0-based pixels like the scenario
renderer's gt.txt) or, with
``--format json``, one JSON object per frame. ``--gt`` scores the result at once (recall per face
size, IDF1) against a MOTChallenge ground truth such as ``paxsim scenario render`` writes.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:  # the vision stack (cv2, dlib, the camera pipeline) is imported when a command runs
    from edge.camera import Camera, CameraConfig, FrameResult

app = typer.Typer(help="Edge vision tools: detect and track faces in a video, score against ground truth.", no_args_is_help=True)
err = Console(stderr=True)


class Fmt(str, Enum):
    mot = "mot"
    json = "json"


def mot_lines(result: FrameResult) -> list[str]:
    frame = result.position + 1 if result.position >= 0 else result.frame_index + 1
    return [f"{frame},{o.track_id},{o.box[0]},{o.box[1]},{o.box[2]},{o.box[3]},{o.score:.3f},-1,-1,-1" for o in result.faces]


def json_line(result: FrameResult) -> str:
    frame = result.position + 1 if result.position >= 0 else result.frame_index + 1
    faces = [
        {"id": o.track_id, "box": list(o.box), "score": round(o.score, 3), "quality": None if math.isnan(o.quality) else o.quality}
        for o in result.faces
    ]
    return json.dumps({"frame": frame, "faces": faces})


async def detect_file(
    config: CameraConfig,
    out: IO[str],
    fmt: Fmt,
    workers: int,
    pool_kind: str,
    progress: Progress | None = None,
    max_frames: int | None = None,
) -> Camera:
    """Run the camera pipeline on ``config``'s source, writing each frame's tracked faces to ``out``;
    a stream runs until ``max_frames`` frames were analysed (or for ever)."""
    import cv2

    from edge.camera import Camera
    from edge.vision.pool import VisionPool

    path = Path(config.source)
    total = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) or 0) if path.is_file() else 0
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    task = progress.add_task(config.camera_id, total=total or None) if progress else None
    pool = VisionPool(workers, pool_kind)  # type: ignore[arg-type]
    try:
        await pool.warm(embed=config.embed)
        cam = Camera(config, pool)
        async for result in cam.results():
            if fmt is Fmt.mot:
                for line in mot_lines(result):
                    out.write(line + "\n")
            else:
                out.write(json_line(result) + "\n")
            out.flush()
            if progress is not None and task is not None:
                progress.update(task, advance=1)
            if max_frames and cam.processed >= max_frames:
                cam.stop()
        return cam
    finally:
        pool.close()


def _camera_from_yaml(path: Path, camera: str | None) -> CameraConfig:
    from edge.camera import load_cameras

    def fail(msg: str) -> typer.Exit:
        err.print(f"[red]error:[/red] {msg}", soft_wrap=True, highlight=False)  # one line, never cut inside a path
        return typer.Exit(2)

    try:
        cams = load_cameras(path)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if not cams:
        raise fail(f"{path}: no camera")
    if camera is None:
        return cams[0]
    for c in cams:
        if c.camera_id == camera:
            return c
    raise fail(f"{path}: no camera {camera!r}; cameras: {', '.join(c.camera_id for c in cams)}")


class Kind(str, Enum):
    yunet = "yunet"
    hog = "hog"


@app.command()
def detect(
    source: str = typer.Argument(
        ..., help="video file, image folder, rtsp://… or http://… stream, webcam:N, or a camera YAML (the edge's camera list)"
    ),
    camera: str | None = typer.Option(None, help="camera YAML: the camera_id to run (default: the first)"),
    format: Fmt = typer.Option(Fmt.mot, "--format", "-f", help="mot: MOTChallenge det lines; json: one object per frame"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output file (default: standard output)"),
    detector: Kind | None = typer.Option(None, help="face detector (default: the camera's, else yunet)"),
    min_face_px: int | None = typer.Option(None, min=8, max=400, help="yunet: the smallest face to find (sets the scan scale)"),
    track_score: float | None = typer.Option(
        None, min=0.0, max=1.0, help="yunet: weaker faces down to this score only continue a live track (default: the camera's)"
    ),
    upsample: int | None = typer.Option(None, min=0, max=3, help="hog: whole-frame upsampling (1 finds ~30 px faces, 4x slower)"),
    region: bool | None = typer.Option(None, help="re-detect around predicted track boxes"),
    detect_interval: int | None = typer.Option(None, min=1, max=30, help="detect on every k-th frame; the tracker carries the rest"),
    motion: bool | None = typer.Option(
        None, "--motion/--no-motion", help="detect only where the frame moved or a track is expected (default: the camera's, on)"
    ),
    frames: int | None = typer.Option(None, min=1, help="stop after this many analysed frames (a stream never ends)"),
    max_width: int | None = typer.Option(None, help="downscale wider frames before detection"),
    sample_fps: float | None = typer.Option(None, help="analyse this many frames per second (default: all)"),
    workers: int = typer.Option(2, min=1, help="vision worker processes"),
    threads: bool = typer.Option(False, help="use threads instead of processes"),
    gt: Path | None = typer.Option(None, help="MOTChallenge gt.txt to score the result against"),
    appearance_weight: float | None = typer.Option(
        None, min=0.0, max=2.0, help="tracker's colour cue in ambiguous associations (0: geometry only; default: the camera's, 0.5)"
    ),
) -> None:
    """Detect and track faces in SOURCE with the edge's detector and tracker (no embeddings, nothing published)."""
    from edge.camera import CameraConfig
    from edge.sources import SourceState

    if source.endswith((".yaml", ".yml")):
        base = _camera_from_yaml(Path(source), camera)
    else:
        if "://" not in source and ":" not in source.split("/")[0] and not Path(source).exists():
            err.print(f"[red]error:[/red] video file not found: {source}")
            raise typer.Exit(2)
        base = CameraConfig(camera_id=Path(source.split("?")[0]).stem or "video", source=source)
    det = {
        "kind": detector.value if detector else None,
        "min_face_px": min_face_px,
        "track_score": track_score,
        "upsample": upsample,
        "region_redetect": region,
    }
    over = {"sample_fps": sample_fps, "max_width": max_width, "detect_interval": detect_interval}
    cfg = CameraConfig.model_validate(
        {
            **base.model_dump(),
            **{k: v for k, v in over.items() if v is not None},
            "embed": False,
            "detector": {**base.detector.model_dump(), **{k: v for k, v in det.items() if v is not None}},
            "tracker": {**base.tracker.model_dump(), **({} if appearance_weight is None else {"appearance_weight": appearance_weight})},
            "motion": {**base.motion.model_dump(), **({} if motion is None else {"enabled": motion})},
            "measure_all": format is Fmt.json,  # JSON reports every face's quality
            # a file offline loses no frame; a stream stays live (drops when the detector falls behind)
            "drop_when_full": base.drop_when_full if base.drop_when_full is not None or "://" in base.source else False,
        }
    )
    if gt is not None and out is None:
        raise typer.BadParameter("--gt needs --out (the detections are scored from that file)")
    sink: IO[str] = out.open("w") if out else sys.stdout
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            cam = asyncio.run(detect_file(cfg, sink, format, workers, "thread" if threads else "process", progress, frames))
    finally:
        if out:
            sink.close()
    st = cam.status()
    if cam.state is SourceState.FAILED or st["decoded"] == 0:
        err.print(f"[red]error:[/red] {st['last_error'] or 'no frame could be read'}")
        raise typer.Exit(2)
    gated = f" ({st['motion_gated']} looked at only where they moved)" if st["motion_gated"] else ""
    err.print(f"{st['processed']} frames{gated}, {st['tracks_started']} tracks" + (f" -> {out}" if out else ""))
    if gt is not None:
        _print_scores(gt, out)  # type: ignore[arg-type]


def _print_scores(gt: Path, det: Path) -> None:
    from edge.evaluate import evaluate as score

    rep = score(gt, det)
    for b in rep["detection"]["bins"]:
        err.print(f"  recall {b['range']:>12}: {b['recall']:.3f} ({b['found']}/{b['faces']})")
    d = rep["detection"]
    err.print(f"  recall >= 60 px: {d['recall_ge_60px']:.3f}  precision: {d['precision']:.3f}")
    for key in ("tracking", "tracking_ge_60px"):
        t = rep[key]
        err.print(f"  {key}: IDF1 {t['idf1']:.3f}  MOTA {t['mota']:.3f}  ID switches {int(t['num_switches'])}")
    typer.echo(json.dumps(rep, indent=2, default=float))


@app.command()
def evaluate(
    gt: Path = typer.Argument(..., help="MOTChallenge ground truth (gt.txt)"),
    det: Path = typer.Argument(..., help="detections/tracks in MOT format (from `paxsim detect`)"),
) -> None:
    """Score a MOT file against ground truth: recall per face size, precision, IDF1 (motmetrics)."""
    _print_scores(gt, det)


if __name__ == "__main__":
    app()
