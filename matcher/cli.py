"""``paxsim gallery enrol|list|remove`` and ``paxsim identify``: the gallery from the command line.

Enrolment from images uses the edge's own detector, aligner and embedder (``edge.vision``), so gallery
templates and live sightings come from the same model. An image must show exactly one face. Enrolment
always writes the consent record(s) first: no template exists without one. Images are read, embedded and
forgotten; only the 128-D template is kept.

Mount: ``app.add_typer(matcher.cli.app, name="gallery")`` and ``app.command("identify")(matcher.cli.identify)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

if TYPE_CHECKING:
    import numpy as np

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The gallery of consented enrolees.")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = typer.Option(None, "--config", "-c", envvar="PAXSIM_CONFIG", help="YAML configuration file")


class ImageError(ValueError):
    """The image cannot be read or does not show exactly one usable face."""


def faces_in_image(path: Path, allow_many: bool = False) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Boxes (x, y, w, h) and (n, 128) float32 embeddings of the faces in one image, with the edge's detector
    and embedder. Raises ImageError when the image is unreadable, shows no face, or (unless ``allow_many``)
    shows more than one."""
    import cv2

    from edge.vision.detector import DetectorSettings
    from edge.vision.pool import analyze_frame, embed_chips

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{path}: cannot read the image (missing file or not an image)")
    analysis = analyze_frame(img, DetectorSettings(region_redetect=False))
    faces = [f for f in analysis.faces if f.chip is not None]
    if not faces:
        raise ImageError(f"{path}: no face found")
    if len(faces) > 1 and not allow_many:
        raise ImageError(f"{path}: {len(faces)} faces found; an enrolment image must show exactly one")
    vecs, _ = embed_chips([f.chip for f in faces])
    return [tuple(int(v) for v in f.box) for f in faces], vecs


def embed_image(path: Path, allow_many: bool = False) -> np.ndarray:
    """The embeddings of :func:`faces_in_image`."""
    return faces_in_image(path, allow_many)[1]


def _settings(config: str | None):
    from core.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _vault():
    """The run's subject vault when a key holder is reachable (``PAXSIM_KEYD_URL``/``_TOKEN``), else None."""
    import os

    from policy.crypto import HttpKeySource, KeyUnavailable, SubjectVault

    if not os.environ.get("PAXSIM_KEYD_URL"):
        return None
    try:
        return SubjectVault(HttpKeySource.from_env())
    except KeyUnavailable:
        return None


def _stores(settings, vault=None):
    from core.paths import gallery_path
    from matcher.gallery import Gallery
    from policy.consent import ConsentRegistry, consent_path

    gpath, cpath = gallery_path(settings), consent_path(settings)
    gallery = Gallery.load(gpath, vault) if gpath.exists() else Gallery()
    consent = ConsentRegistry.load(cpath) if cpath.exists() or cpath.suffix != ".json" else ConsentRegistry()
    return gallery, gpath, consent, cpath


def enrol_views(
    subject_id: str,
    purposes: Sequence[str],
    images: Sequence[Path],
    settings,
    embed: Callable[[Path], np.ndarray] | None = None,
    progress: Progress | None = None,
) -> int:
    """Embed every image (all must succeed), grant the purposes, add the views. Returns the subject's view count."""
    import numpy as np

    from policy.consent import PURPOSES

    if not subject_id.strip():
        raise ValueError("empty subject id")
    bad = [p for p in purposes if p not in PURPOSES]
    if bad or not purposes:
        raise ValueError(f"unknown or missing purpose(s) {bad}; choose from {', '.join(PURPOSES)}")
    embed = embed or embed_image
    views = []
    task = progress.add_task("embedding", total=len(images)) if progress else None
    for path in images:
        v = np.asarray(embed(path), np.float32).reshape(-1, 128)
        if v.shape[0] != 1 or not np.isfinite(v).all():
            raise ImageError(f"{path}: expected one finite 128-D embedding")
        views.append(v[0])
        if progress is not None and task is not None:
            progress.advance(task)
    vault = _vault()
    gallery, gpath, consent, cpath = _stores(settings, vault)
    if gallery.is_sealed:
        from matcher.gallery import GallerySealed

        raise GallerySealed("the gallery is sealed per subject: enrol with the run's key holder (PAXSIM_KEYD_URL/TOKEN)")
    granted = [consent.consent(subject_id, p) for p in purposes]
    if cpath.suffix == ".json":
        consent.save(cpath)
    from core.paths import state_dir
    from policy.audit import record_grants

    record_grants(state_dir(settings), granted, "enrolment")  # every grant in the consent chain, as `consent grant` does
    gallery.enrol(subject_id, np.stack(views), consent)
    gallery.save(gpath, vault)
    return sum(s == subject_id for s in gallery.subject_ids)


@app.command("enrol")
def enrol_command(
    images: list[Path] = typer.Argument(..., help="one or more images, each showing only the subject's face"),
    subject_id: str = typer.Option(..., "--id", help="subject id"),
    consent: str = typer.Option(..., "--consent", help="purpose[,purpose]: what the subject consented to"),
    config: str | None = ConfigOpt,
) -> None:
    """Enrol a consenting subject from face images (several images = several views)."""
    settings = _settings(config)
    purposes = [p.strip() for p in consent.split(",") if p.strip()]
    try:
        with Progress(console=err, transient=True) as progress:
            n = enrol_views(subject_id, purposes, images, settings, progress=progress)
    except (ImageError, ValueError) as exc:
        err.print(f"[red]enrolment refused: {exc}[/] (nothing was stored)")
        raise typer.Exit(2) from None
    console.print(f"enrolled {subject_id}: {len(images)} view(s) added, {n} in total; consent: {', '.join(purposes)}")


@app.command("list")
def list_(config: str | None = ConfigOpt) -> None:
    """List enrolled subjects with their view count and active consents."""
    import time

    settings = _settings(config)
    gallery, _, consent, _ = _stores(settings)
    now = time.time()
    table = Table("subject", "views", "consent (active)")
    counts: dict[str, int] = {}
    for s in gallery.subject_ids:
        counts[s] = counts.get(s, 0) + 1
    for s in sorted(counts):
        recs = consent.records.get(s, {})
        active = sorted(p for p, r in recs.items() if r.withdrawn_at is None and r.granted_at <= now < r.expires_at)
        # templates whose consent is gone wait for the matcher to apply the erasure: say so, never list them as fine
        shown = ", ".join(active) or ("[red]withdrawn: erasure pending[/]" if consent.withdrawn(s) else "[red]none: erasure due[/]")
        table.add_row(s, str(counts[s]), shown)
    console.print(table)
    console.print(f"{len(counts)} subject(s), {len(gallery)} view(s)")


@app.command("remove")
def remove(
    subject_id: str = typer.Argument(..., help="subject id"),
    keep_consent: bool = typer.Option(False, "--keep-consent", help="remove the templates but leave the consent records"),
    config: str | None = ConfigOpt,
) -> None:
    """Erase a subject's templates (and by default withdraw their consent, which erases them everywhere)."""
    settings = _settings(config)
    gallery, gpath, consent, cpath = _stores(settings)
    removed = gallery.remove(subject_id)
    req = None if keep_consent else consent.withdraw(subject_id)
    if removed == 0 and req is None:
        err.print(f"[yellow]{subject_id}: not enrolled, nothing to remove[/]")
        raise typer.Exit(1)
    gallery.save(gpath)
    if req is not None and cpath.suffix == ".json":
        consent.save(cpath)
    msg = f"removed {removed} view(s) of {subject_id}"
    if req is not None:
        msg += f"; consent withdrawn, erasure request {req.request_id}"
    console.print(msg)


def identify(
    images: list[Path] = typer.Argument(..., help="images with one or more faces each"),
    purpose: str | None = typer.Option(None, "--purpose", help="search only subjects with active consent for this purpose"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per image: its faces' boxes, subjects and distances"),
    config: str | None = ConfigOpt,
) -> None:
    """Print the best identity and its distance for each face in each image, or `unknown`.

    Only subjects with active consent (for ``--purpose``, else for any purpose) are searched, and every
    answer is recorded in the audit chain ``offline-tools``, as the matcher does for its own decisions.
    An image that cannot be read or shows no face is reported and skipped (exit 2 at the end)."""
    import json
    import time

    from policy.audit import AuditLog
    from policy.consent import PURPOSES

    if purpose is not None and purpose not in PURPOSES:
        err.print(f"[red]unknown purpose {purpose!r}; purposes: {sorted(PURPOSES)}[/]")
        raise typer.Exit(2)
    settings = _settings(config)
    gallery, _, consent, _ = _stores(settings, _vault())
    if gallery.is_sealed:
        err.print("[red]the gallery is sealed per subject: run with the run's key holder (PAXSIM_KEYD_URL/TOKEN)[/]")
        raise typer.Exit(2)
    now = time.time()

    def allowed(sid: str) -> bool:
        if purpose is None:
            return consent.has_any(sid, now)
        rec = consent.get(sid, purpose)
        return rec is not None and rec.status(now) == "active"

    keep = [i for i, sid in enumerate(gallery.subject_ids) if allowed(sid)]
    ids, vectors = [gallery.subject_ids[i] for i in keep], gallery.vectors[keep]
    from matcher.metric import MetricError, comparison

    try:  # decide as the matcher does (in the learned space with its rule, when one is configured)
        metric, threshold, margin = comparison(settings.matcher)
    except MetricError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    space = metric.apply if metric is not None else (lambda x: x)
    failed = 0
    with AuditLog.in_state_dir(settings.state_dir, "offline-tools", actor="cli:identify") as audit:
        for image in images:
            try:
                boxes, vecs = faces_in_image(image, allow_many=True)
            except ImageError as exc:
                err.print(f"[red]{exc}[/]")
                failed += 1
                continue
            answers = identify_matches(ids, space(vectors), space(vecs), threshold, margin)
            for named, _ in answers:
                audit.append("identify", "allow", rule=f"purpose:{purpose or 'any'}", subject_id=named, object_id=str(image))
            if as_json:
                faces = [{"box": list(b), "subject": n, "distance": d} for b, (n, d) in zip(boxes, answers)]
                typer.echo(json.dumps({"image": str(image), "faces": faces}))
            else:
                for n, d in answers:
                    console.print("unknown" if n is None else f"{n} {d:.3f}", highlight=False)
    if failed:
        raise typer.Exit(2)


def identify_matches(
    subject_ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray, threshold: float, margin: float = 0.0
) -> list[tuple[str | None, float | None]]:
    """Per query: (subject, distance) of the best template below ``threshold`` (and ``margin`` nearer than the
    next subject, as the matcher decides: ``SearchResult.identify``), else (None, None)."""
    from matcher.index import GalleryIndex, search_k

    if not len(subject_ids):
        return [(None, None) for _ in range(len(queries))]
    idx = GalleryIndex.build(list(subject_ids), vectors)
    out: list[tuple[str | None, float | None]] = []
    for r in idx.search(queries, k=search_k(margin)):
        hit = r.identify(threshold, margin)
        out.append((None, None) if hit is None else (hit.subject_id, round(float(hit.distance), 4)))
    return out


def identify_lines(subject_ids: Sequence[str], vectors: np.ndarray, queries: np.ndarray, threshold: float) -> list[str]:
    """One line per query: ``<subject> <distance>`` when below ``threshold``, else ``unknown``."""
    return ["unknown" if n is None else f"{n} {d:.3f}" for n, d in identify_matches(subject_ids, vectors, queries, threshold)]
