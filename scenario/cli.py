"""``paxsim scenario``: regenerate the identity bank, fit the learned metric, render a scenario to video + ground truth."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Synthetic airport: identity bank, rendered video with ground truth.", no_args_is_help=True)
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def bank(
    n: int = typer.Option(50, "--n", min=1, max=500, help="identities in the bank"),
    seed: int = typer.Option(0, help="optimisation seed"),
    out: Path = typer.Option(Path(__file__).parent / "data", help="directory for bank.json + bank_embeddings.npz"),
    refine: int = typer.Option(18, help="refinement: re-optimise the K identities with the nearest neighbours (0 = off)"),
    calibrate: bool = typer.Option(True, help="also re-measure the embedding noise model (calibration.json)"),
    renders: int = typer.Option(10, help="jittered renders per identity for the calibration"),
) -> None:
    """Optimise the identity bank against dlib HOG + ResNet and save it (~30-60 min on one core).

    Greedy (1+1)-ES per identity, then three refinement passes (nearest neighbours twice, then the identities
    confused in a 10-render measurement), then the calibration measurement."""
    import numpy as np

    from .bank import build_bank

    t0 = time.time()
    with _progress() as prog:
        task = prog.add_task("optimising identities", total=n)
        idents, embs = build_bank(n, seed, out, progress=lambda k, c: prog.update(task, completed=k))
    if refine > 0:
        # pass 1 and 2: the identities with the nearest neighbours; pass 3: those confused in a measurement
        passes = [(seed + 1, 12, 3, 0.1, refine), (seed + 2, 20, 2, 0.03, refine + 2)]
        for p_seed, steps, starts, weight, k in passes:
            d = np.linalg.norm(embs[:, None] - embs[None], axis=2) + np.eye(len(embs)) * 9
            worst = [int(i) for i in np.argsort(d.min(axis=1))[:k]]
            idents, embs = _refine(worst, p_seed, out, steps, starts, weight)
        from .calibration import measure

        m = measure(idents, renders=renders, seed=0, base=embs)
        confused: set[int] = set()
        for i in np.flatnonzero(m.detected_up1):
            j = int(np.nanargmin(m.distances[i]))
            if j != m.identity[i]:
                confused |= {int(m.identity[i]), j}
        if confused:
            idents, embs = _refine(sorted(confused), seed + 3, out, 24, 3, 0.03)
    console.print(f"bank: {len(idents)} identities → {out} ({time.time() - t0:.0f} s)")
    if calibrate:
        _calibrate(idents, embs, renders, out)


def _refine(indices: list[int], seed: int, out: Path, steps: int, starts: int, weight: float):
    from .bank import refine_bank

    with _progress() as prog:
        task = prog.add_task(f"refining {len(indices)} identities", total=len(indices))
        return refine_bank(
            indices,
            seed,
            out,
            steps=steps,
            starts=starts,
            bank_dir=out,
            score_weight=weight,
            progress=lambda k, c: prog.update(task, completed=k),
        )


def _calibrate(idents, embs, renders: int, out: Path) -> None:
    from .calibration import NoiseModel, measure

    with _progress() as prog:
        task = prog.add_task("calibrating", total=len(idents))
        m = measure(idents, renders=renders, seed=0, base=embs, progress=lambda k: prog.update(task, completed=k))
    model = NoiseModel.from_measurement(m)
    model.save(out / "calibration.json")
    for k, v in model.stats.items():
        console.print(f"  {k}: {v}")


@app.command()
def metric(
    out: Path = typer.Option(Path(__file__).parent / "data" / "metric.npz", help="where to write the metric file (matcher.metric_file)"),
    fit_people: int = typer.Option(200, min=20, help="background people the within-person covariance is fitted on"),
    calibration_people: int = typer.Option(100, min=4, help="held-out people (half enrolled, half strangers) for the rule"),
    renders: int = typer.Option(5, min=2, help="jittered views per person"),
    shrinkage: float = typer.Option(0.3, min=0.001, help="share of the mean within-person variance added to every direction"),
    target_fpir: float = typer.Option(0.01, min=0.0, max=1.0, help="FPIR the threshold and margin are chosen for"),
    workers: int = typer.Option(2, min=1),
    views: str = typer.Option("portrait", help="how background people are seen: portrait (jittered stills) or cctv (ceiling cameras)"),
) -> None:
    """Fit the matcher's learned metric (WCCN) on synthetic background people and calibrate its rule (~4 min).

    Use it with ``matcher.metric_file``; docs/matcher.md says when it helps and what it costs."""
    from .metric import VIEWS, build_metric

    if views not in VIEWS:
        console.print(f"[red]--views {views!r}: one of {sorted(VIEWS)}[/]")
        raise typer.Exit(2)
    t0 = time.time()
    with _progress() as prog:
        task = prog.add_task("background people", total=fit_people + calibration_people)
        m, point = build_metric(
            fit_people,
            calibration_people,
            renders,
            shrinkage,
            target_fpir,
            workers,
            progress=lambda k, n: prog.update(task, completed=k),
            views_of=views,
        )
    m.save(out)
    console.print(
        f"metric -> {out} ({time.time() - t0:.0f} s): threshold {point.threshold:.2f} margin {point.margin:.2f}; held out: "
        f"named right {point.identified:.3f}, wrong {point.wrong:.3f}, FPIR {point.fpir:.3f} "
        f"({point.enrolled} genuine / {point.non_enrolled} stranger views)"
    )


@app.command()
def render(
    out: Path = typer.Option(..., "--out", help="output directory"),
    seconds: float = typer.Option(30.0, "--seconds", min=0.0, help="seconds of video per camera"),
    scenario: Path | None = typer.Option(None, "--scenario", help="scenario YAML (default: built-in airport)"),
    seed: int | None = typer.Option(None, "--seed", help="override the scenario's seed"),
    camera: list[str] | None = typer.Option(None, "--camera", help="only these camera ids (repeatable)"),
) -> None:
    """Render one mp4 per camera + MOTChallenge ground truth + manifest.json into OUT."""
    from .render import render_all
    from .world import ScenarioError, load_world

    try:
        world = load_world(scenario, seed)
    except ScenarioError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    ids = camera or [c.id for c in world.cameras]
    unknown = set(ids) - {c.id for c in world.cameras}
    if unknown:
        console.print(f"[red]unknown cameras: {sorted(unknown)}; known: {[c.id for c in world.cameras]}")
        raise typer.Exit(2)
    total = sum(int(round(seconds * world.camera(c).fps)) for c in ids)
    t0 = time.time()
    with _progress() as prog:
        task = prog.add_task("rendering frames", total=total)
        summaries = render_all(world, out, seconds, ids, progress=lambda k: prog.advance(task, k))
    dt = time.time() - t0
    for s in summaries:
        console.print(f"  {s['camera']}: {s['frames']} frames, {s['faces']} face boxes")
    console.print(f"rendered {total} frames in {dt:.1f} s ({total / max(dt, 1e-9):.0f} frames/s) → {out}")
