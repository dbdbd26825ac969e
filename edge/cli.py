"""``paxsim detect`` and ``paxsim edge evaluate``: the edge's detector and tracker, offline, on a video.

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
from typing import IO

import cv2
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edge.camera import Camera, CameraConfig, FrameResult
from edge.sources import SourceState
from edge.tracker import TrackerSettings
from edge.vision.detector import DetectorSettings
from edge.vision.pool import VisionPool

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
    video: Path, out: IO[str], fmt: Fmt, config: CameraConfig, workers: int, pool_kind: str, progress: Progress | None = None
) -> Camera:
    """Run the camera pipeline on a video file, writing each frame's tracked faces to ``out``."""
    total = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) or 0) if video.is_file() else 0
    task = progress.add_task(video.name, total=total or None) if progress else None
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
            if progress is not None and task is not None:
                progress.update(task, advance=1)
        return cam
    finally:
        pool.close()


@app.command()
def detect(
    video: Path = typer.Argument(..., help="video file (any format OpenCV's FFmpeg reads)"),
    format: Fmt = typer.Option(Fmt.mot, "--format", "-f", help="mot: MOTChallenge det lines; json: one object per frame"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output file (default: standard output)"),
    upsample: int = typer.Option(0, min=0, max=3, help="whole-frame HOG upsampling (1 finds ~30 px faces, 4x slower)"),
    region: bool = typer.Option(True, help="re-detect around predicted track boxes (upsample 1)"),
    max_width: int | None = typer.Option(None, help="downscale wider frames before detection"),
    sample_fps: float | None = typer.Option(None, help="analyse this many frames per second (default: all)"),
    workers: int = typer.Option(2, min=1, help="vision worker processes"),
    threads: bool = typer.Option(False, help="use threads instead of processes"),
    gt: Path | None = typer.Option(None, help="MOTChallenge gt.txt to score the result against"),
    appearance_weight: float = typer.Option(
        TrackerSettings().appearance_weight, min=0.0, max=2.0, help="tracker's colour cue in ambiguous associations (0: geometry only)"
    ),
) -> None:
    """Detect and track faces in VIDEO offline with the edge's detector and tracker."""
    cfg = CameraConfig(
        camera_id=video.stem or "video",
        source=str(video),
        embed=False,
        sample_fps=sample_fps,
        max_width=max_width,
        detector=DetectorSettings(upsample=upsample, region_redetect=region),
        tracker=TrackerSettings(appearance_weight=appearance_weight),
        drop_when_full=False,
        measure_all=format is Fmt.json,  # JSON reports every face's quality
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
            cam = asyncio.run(detect_file(video, sink, format, cfg, workers, "thread" if threads else "process", progress))
    finally:
        if out:
            sink.close()
    st = cam.status()
    if cam.state is SourceState.FAILED or st["decoded"] == 0:
        err.print(f"[red]error:[/red] {st['last_error'] or 'no frame could be read'}")
        raise typer.Exit(2)
    err.print(f"{st['processed']} frames, {st['tracks_started']} tracks" + (f" -> {out}" if out else ""))
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
