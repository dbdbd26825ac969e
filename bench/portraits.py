"""Portrait identification through the edge's own vision (detector → 5-point alignment → ResNet), per detector.

    .venv/bin/python -m bench.portraits [--identities 60] [--renders 5] [--styles bank,random]

Each identity is enrolled from its frontal, evenly lit portrait; ``--renders`` other views of it (yaw ±25°,
pitch ±10°, roll ±8°, light, 70-140 px, blur, noise, JPEG: ``scenario.faces.jitter``) are identified against
all enrolments (1:N, nearest template). A view whose face the detector misses counts as a failure, so
rank-1 is over every render. Styles: ``bank`` (identities refined against dlib HOG + ResNet) and ``random``
(fresh random identities, never refined: the figure that says how the edge does on faces nobody tuned).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge.vision.detector import DetectorSettings, iou
from edge.vision.pool import analyze_frame, embed_chips
from matcher.index import GalleryIndex, search_k
from scenario.bank import BANK_FILE, load_bank
from scenario.calibration import enrol_view
from scenario.faces import build, random_identity
from scenario.faces.jitter import jittered_view, scale_for_face_px

DETECTORS = {"hog (edge, upsample 0)": DetectorSettings(kind="hog"), "yunet": DetectorSettings(kind="yunet")}


def chip_for(img: np.ndarray, settings: DetectorSettings, box: tuple[int, int, int, int] | None):
    """The aligned chip of the detected face that overlaps ``box`` best (the largest face without a box)."""
    faces = [f for f in analyze_frame(img, settings.model_copy(update={"region_redetect": False})).faces if f.chip is not None]
    if box is not None:
        faces = [f for f in faces if iou(f.box, box) >= 0.3]
        faces.sort(key=lambda f: -iou(f.box, box))
    else:
        faces.sort(key=lambda f: -f.box[2])
    return faces[0].chip if faces else None


def view_chips(model, renders: int, settings: DetectorSettings, seed: int = 0) -> list:
    """The aligned chips of ``renders`` other views of ``model`` (None where the detector missed the face)."""
    rng = np.random.default_rng([seed, model.identity.seed])
    per_px = scale_for_face_px(model, 40.0) / 40.0
    chips = []
    for _ in range(renders):
        img, box, _ = jittered_view(model, rng, unit_scale=per_px)
        chips.append(chip_for(img, settings, box))
    return chips


def run(identities, renders: int, settings: DetectorSettings, seed: int = 0, vectors: dict | None = None) -> dict:
    models = [build(i) for i in identities]
    enrol = [chip_for(enrol_view(m)[0], settings, None) for m in models]
    ok = [c is not None for c in enrol]
    gallery, _ = embed_chips([c for c in enrol if c is not None])
    index = np.flatnonzero(ok)
    hits, found, total = 0, 0, 0
    by_sex: dict[str, list[int]] = {}
    for k, m in enumerate(models):
        chips = view_chips(m, renders, settings, seed)
        total += renders
        got = [c for c in chips if c is not None]
        found += len(got)
        right = 0
        if got:
            vecs, _ = embed_chips(got)
            if vectors is not None:  # (identity, render) -> embedding, to compare detectors' alignments
                js = [j for j, c in enumerate(chips) if c is not None]
                vectors.update({(k, j): v for j, v in zip(js, vecs)})
        if got and ok[k]:
            d = np.linalg.norm(vecs[:, None, :] - gallery[None], axis=2)
            right = int(np.sum(index[np.argmin(d, axis=1)] == k))
        hits += right
        s = by_sex.setdefault(m.identity.sex, [0, 0])
        s[0] += right
        s[1] += renders
    return {
        "identities": len(models),
        "enrolled": int(sum(ok)),
        "renders": total,
        "detected": found / total,
        "rank1": hits / total,
        "rank1_by_sex": {k: v[0] / v[1] for k, v in sorted(by_sex.items())},
    }


def probes(models, renders: int, settings: DetectorSettings, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """(identity index, embedding) of ``renders`` other views of each model (views the detector misses left out)."""
    out = []
    for k, m in enumerate(models):
        got = [c for c in view_chips(m, renders, settings, seed) if c is not None]
        if got:
            out.extend((k, v) for v in embed_chips(got)[0])
    return out


def open_set(identities, impostors, renders: int, settings: DetectorSettings, threshold: float, margins: list[float]) -> dict:
    """1:N as the matcher decides it (``GalleryIndex`` + ``SearchResult.identify``), with people who were never
    enrolled among the probes: per margin rule (nearest template within ``threshold`` *and* the second nearest
    subject at least ``margin`` farther), the
    share of genuine views named right, named wrong and refused, and the share of impostor views accepted."""
    models = [build(i) for i in identities]
    enrol = [chip_for(enrol_view(m)[0], settings, None) for m in models]
    ok = [k for k, c in enumerate(enrol) if c is not None]
    index = GalleryIndex.build([str(k) for k in ok], embed_chips([enrol[k] for k in ok])[0])
    genuine = [(str(k), v) for k, v in probes(models, renders, settings) if enrol[k] is not None]
    strangers = [v for _, v in probes([build(i) for i in impostors], renders, settings, seed=1)]
    k = search_k(max(margins))
    found = index.search(np.stack([v for _, v in genuine]), k) if genuine else []
    found_strangers = index.search(np.stack(strangers), k) if strangers else []
    n, ns = max(1, len(genuine)), max(1, len(strangers))
    out = {"enrolled": len(ok), "genuine_views": len(genuine), "impostor_views": len(strangers), "threshold": threshold, "rules": {}}
    for m in margins:
        named = [(who, r.identify(threshold, m)) for (who, _), r in zip(genuine, found)]
        out["rules"][f"margin {m:.2f}"] = {
            "rank1": sum(h is not None and h.subject_id == who for who, h in named) / n,
            "wrong": sum(h is not None and h.subject_id != who for who, h in named) / n,
            "frr": sum(h is None for _, h in named) / n,
            "far": sum(r.identify(threshold, m) is not None for r in found_strangers) / ns,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=60)
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--styles", default="bank,random")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--impostors", type=int, default=0, help="open set: this many never-enrolled random identities as probes too (YuNet)")
    args = ap.parse_args()
    if args.impostors:
        from core.config import MatcherSettings

        threshold = MatcherSettings().threshold
        for style in args.styles.split(","):
            idents = (
                load_bank(BANK_FILE)[: args.identities]
                if style == "bank"
                else [random_identity(50_000 + i) for i in range(args.identities)]
            )
            strangers = [random_identity(90_000 + i) for i in range(args.impostors)]
            r = open_set(idents, strangers, args.renders, DETECTORS["yunet"], threshold, [0.0, 0.02, 0.04, 0.06, 0.08])
            print(
                f"[{style}] open set: {r['enrolled']} enrolled, {r['genuine_views']} genuine and {r['impostor_views']} impostor views, threshold {threshold}"
            )
            for rule, v in r["rules"].items():
                print(f"  {rule}: rank-1 {v['rank1']:.3f}  wrong {v['wrong']:.3f}  FRR {v['frr']:.3f}  FAR {v['far']:.3f}")
        return
    styles = args.styles.split(",")
    out: dict[str, dict] = {}
    for style in styles:
        if style == "bank":
            idents = load_bank(BANK_FILE)[: args.identities]
        else:
            idents = [random_identity(50_000 + i) for i in range(args.identities)]  # seeds far from the bank's
        vecs: dict[str, dict] = {}
        for name, st in DETECTORS.items():
            t0 = time.time()
            out.setdefault(style, {})[name] = run(idents, args.renders, st, vectors=vecs.setdefault(name, {}))
            print(f"[{style}] {name} done in {time.time() - t0:.0f} s", flush=True)
        a, b = (vecs[n] for n in DETECTORS)
        both = sorted(set(a) & set(b))
        d = np.array([np.linalg.norm(a[k] - b[k]) for k in both])
        out[style]["embedding_shift"] = {"views": len(both), "mean": float(d.mean()), "p95": float(np.percentile(d, 95))}
    print(f"\nPortrait identification, frontal enrolment, {args.renders} other views each (rank-1 over every view | detected)")
    print(f"{'detector':<24}" + "".join(f" | {s:^26}" for s in styles))
    for name in DETECTORS:
        cells = [f"{out[s][name]['rank1']:.3f} | {out[s][name]['detected']:.3f}" for s in styles]
        print(f"{name:<24}" + "".join(f" | {c:^26}" for c in cells))
    for s in styles:
        e = out[s]["embedding_shift"]
        print(
            f"  {s}: same view, YuNet box vs HOG box -> aligned chip -> embedding: L2 shift mean {e['mean']:.3f}, "
            f"p95 {e['p95']:.3f} over {e['views']} views (match threshold 0.42)"
        )
        for name in DETECTORS:
            r = out[s][name]
            print(f"  {s} / {name}: {r['identities']} identities ({r['enrolled']} enrolled), by sex {r['rank1_by_sex']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
