"""Portrait identification through the edge's own vision (detector → 5-point alignment → ResNet), per detector.

    .venv/bin/python -m bench.portraits [--identities 60] [--renders 5] [--styles bank,random]
    .venv/bin/python -m bench.portraits --impostors 60 [--target-fpir 0.01,0.05]    # open set, operating points
    ... [--metric scenario/data/metric.npz] [--random-base 80000]    # also in the learned metric's space

Each identity is enrolled from its frontal, evenly lit portrait; ``--renders`` other views of it (yaw ±25°,
pitch ±10°, roll ±8°, light, 70-140 px, blur, noise, JPEG: ``scenario.faces.jitter``) are identified against
all enrolments (1:N, nearest template). A view whose face the detector misses counts as a failure, so
rank-1 is over every render. Styles: ``bank`` (identities refined against dlib HOG + ResNet) and ``random``
(fresh random identities, never refined: the figure that says how the edge does on faces nobody tuned).
With ``--metric``, the same embeddings are also compared in a learned metric's space (``matcher.metric``,
fitted on other random people: ``paxsim scenario metric``), side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.vision.detector import DetectorSettings
from edge.vision.pool import embed_chips
from matcher.index import GalleryIndex, search_k
from matcher.metric import LearnedMetric
from scenario.bank import BANK_FILE, load_bank
from scenario.calibration import enrol_view
from scenario.faces import build, random_identity
from scenario.faces.jitter import JitterSpec
from scenario.metric import MARGINS as METRIC_MARGINS
from scenario.metric import THRESHOLDS as METRIC_THRESHOLDS
from scenario.metric import VIEWS, view_chips
from scenario.metric import face_chip as chip_for

DETECTORS = {"hog (edge, upsample 0)": DetectorSettings(kind="hog"), "yunet": DetectorSettings(kind="yunet")}


def run(
    identities,
    renders: int,
    settings: DetectorSettings,
    seed: int = 0,
    vectors: dict | None = None,
    metric: LearnedMetric | None = None,
    spec: JitterSpec = JitterSpec(),
) -> dict:
    """Rank-1 (nearest enrolment) over every view, in the embedder's space and, with ``metric``, in its learned space."""
    models = [build(i) for i in identities]
    enrol = [chip_for(enrol_view(m)[0], settings, None) for m in models]
    ok = [c is not None for c in enrol]
    spaces = {"rank1": lambda x: x} | ({"rank1_metric": metric.apply} if metric is not None else {})
    raw_gallery = embed_chips([c for c in enrol if c is not None])[0]
    galleries = {name: f(raw_gallery) for name, f in spaces.items()}
    index = np.flatnonzero(ok)
    hits = dict.fromkeys(spaces, 0)
    found, total = 0, 0
    by_sex: dict[str, dict[str, int]] = {}
    for k, m in enumerate(models):
        chips = view_chips(m, renders, settings, seed, spec)
        total += renders
        got = [c for c in chips if c is not None]
        found += len(got)
        s = by_sex.setdefault(m.identity.sex, {"views": 0} | dict.fromkeys(spaces, 0))
        s["views"] += renders
        if not got:
            continue
        vecs, _ = embed_chips(got)
        if vectors is not None:  # (identity, render) -> embedding, to compare detectors' alignments
            js = [j for j, c in enumerate(chips) if c is not None]
            vectors.update({(k, j): v for j, v in zip(js, vecs)})
        if ok[k]:
            for name, f in spaces.items():
                d = np.linalg.norm(f(vecs)[:, None, :] - galleries[name][None], axis=2)
                right = int(np.sum(index[np.argmin(d, axis=1)] == k))
                hits[name] += right
                s[name] += right
    return {
        "identities": len(models),
        "enrolled": int(sum(ok)),
        "renders": total,
        "detected": found / total,
        **{name: h / total for name, h in hits.items()},
        **{f"{name}_by_sex": {sex: v[name] / v["views"] for sex, v in sorted(by_sex.items())} for name in spaces},
    }


def probes(models, renders: int, settings: DetectorSettings, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """(identity index, embedding) of ``renders`` other views of each model (views the detector misses left out)."""
    out = []
    for k, m in enumerate(models):
        got = [c for c in view_chips(m, renders, settings, seed) if c is not None]
        if got:
            out.extend((k, v) for v in embed_chips(got)[0])
    return out


def open_set_searches(
    identities, impostors, renders: int, settings: DetectorSettings, space: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[list, list, list, list]:
    """The matcher's own searches (``GalleryIndex``, two nearest subjects) of every view, with people who were
    never enrolled among the probes: (true subject, search) per genuine view, the strangers' searches, and the
    demographic group (sex, age band) of each, for ``matcher.calibration.open_set_point``. ``space``: what
    the matcher applies to templates before it compares them (a learned metric's ``apply``)."""
    f = space or (lambda x: x)
    models = [build(i) for i in identities]
    enrol = [chip_for(enrol_view(m)[0], settings, None) for m in models]
    ok = [k for k, c in enumerate(enrol) if c is not None]
    index = GalleryIndex.build([str(k) for k in ok], f(embed_chips([enrol[k] for k in ok])[0]))
    genuine = [(k, v) for k, v in probes(models, renders, settings) if enrol[k] is not None]
    strangers = probes([build(i) for i in impostors], renders, settings, seed=1)
    k = search_k(1.0)  # the two nearest subjects: what any margin of the grid needs
    found = index.search(f(np.stack([v for _, v in genuine])), k) if genuine else []
    found_strangers = index.search(f(np.stack([v for _, v in strangers])), k) if strangers else []
    group = lambda ident: f"{ident.sex} {ident.age_band}"  # noqa: E731
    return (
        [(str(k), r) for (k, _), r in zip(genuine, found)],
        list(found_strangers),
        [group(identities[k]) for k, _ in genuine],
        [group(impostors[k]) for k, _ in strangers],
    )


def _point_line(p) -> str:  # noqa: ANN001
    return (
        f"threshold {p.threshold:.2f} margin {p.margin:.2f}: named right {p.identified:.3f}, wrong {p.wrong:.3f}, "
        f"FNIR {p.fnir:.3f}, FPIR {p.fpir:.3f} ({p.enrolled} genuine / {p.non_enrolled} stranger views)"
    )


def report_open_set(
    styles: list[str], n: int, impostors: int, renders: int, targets: list[float], metric: LearnedMetric | None = None
) -> None:
    """Per style: the margin rule at the configured threshold, then for each FPIR target the operating point
    (threshold and margin together) and its rates per group; the random population's point is also applied
    to the bank population (a point calibrated on one population, used on another). With ``metric``, all of it
    in the learned space, starting from the file's own calibrated rule."""
    from core.config import MatcherSettings
    from matcher.calibration import OpenSetPoint, open_set_point, operating_point

    if metric is None:
        threshold, rule_margin, space, where = MatcherSettings().threshold, None, None, ""
        thresholds = [round(0.30 + 0.01 * i, 2) for i in range(17)]  # 0.30 .. 0.46
        margins = [round(0.01 * i, 2) for i in range(11)]  # 0 .. 0.10
    else:
        threshold, rule_margin, space, where = metric.threshold, metric.margin, metric.apply, ", learned metric"
        thresholds, margins = METRIC_THRESHOLDS, METRIC_MARGINS
    data = {}
    for style in styles:
        idents = load_bank(BANK_FILE)[:n] if style == "bank" else [random_identity(50_000 + i) for i in range(n)]
        data[style] = open_set_searches(idents, [random_identity(90_000 + i) for i in range(impostors)], renders, DETECTORS["yunet"], space)
    chosen: dict[tuple[str, float], OpenSetPoint | None] = {}
    for style, (genuine, strangers, g_groups, s_groups) in data.items():
        print(f"[{style}] open set{where}, YuNet, frontal enrolment; strangers are random identities never enrolled")
        if rule_margin is not None:
            print("  the metric file's own rule: " + _point_line(open_set_point(genuine, strangers, threshold, rule_margin)))
        for m in (0.0, 0.02, 0.04, 0.06, 0.08):
            print("  " + _point_line(open_set_point(genuine, strangers, threshold, m)))
        for target in targets:
            p = operating_point(genuine, strangers, target, thresholds, margins)
            chosen[(style, target)] = p
            print(f"  operating point for FPIR <= {target:g}: " + (_point_line(p) if p else "none in the grid"))
            if p is None:
                continue
            for grp in sorted(set(g_groups) | set(s_groups)):
                gi = [x for x, g in zip(genuine, g_groups) if g == grp]
                si = [x for x, g in zip(strangers, s_groups) if g == grp]
                q = open_set_point(gi, si, p.threshold, p.margin)
                print(
                    f"    {grp:<12} named right {q.identified:.3f}  wrong {q.wrong:.3f}  FPIR {q.fpir:.3f}  ({q.enrolled} / {q.non_enrolled})"
                )
    if "random" in data and "bank" in data:
        genuine, strangers, *_ = data["bank"]
        for target in targets:
            p = chosen[("random", target)]
            if p is not None:
                print(
                    f"[bank] with the random population's point for FPIR <= {target:g}: "
                    + _point_line(open_set_point(genuine, strangers, p.threshold, p.margin))
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=60)
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--styles", default="bank,random")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--impostors", type=int, default=0, help="open set: this many never-enrolled random identities as probes too (YuNet)")
    ap.add_argument("--target-fpir", default="0.01,0.05", help="open set: choose threshold and margin for each of these FPIR targets")
    ap.add_argument("--random-base", type=int, default=50_000, help="first seed of the random identities (another set: 80000)")
    ap.add_argument("--views", default="portrait", choices=sorted(VIEWS), help="how the identified views are made (scenario.metric.VIEWS)")
    ap.add_argument("--metric", type=Path, help="also compare in this learned metric's space (paxsim scenario metric)")
    args = ap.parse_args()
    metric = LearnedMetric.load(args.metric) if args.metric else None
    if args.impostors:
        targets = [float(x) for x in args.target_fpir.split(",")]
        report_open_set(args.styles.split(","), args.identities, args.impostors, args.renders, targets, metric)
        return
    styles = args.styles.split(",")
    out: dict[str, dict] = {}
    for style in styles:
        if style == "bank":
            idents = load_bank(BANK_FILE)[: args.identities]
        else:
            idents = [random_identity(args.random_base + i) for i in range(args.identities)]  # seeds far from the bank's
        vecs: dict[str, dict] = {}
        for name, st in DETECTORS.items():
            t0 = time.time()
            st = st.model_copy(update={"min_face_px": VIEWS[args.views].min_face_px})
            out.setdefault(style, {})[name] = run(
                idents, args.renders, st, vectors=vecs.setdefault(name, {}), metric=metric, spec=VIEWS[args.views].spec
            )
            print(f"[{style}] {name} done in {time.time() - t0:.0f} s", flush=True)
        a, b = (vecs[n] for n in DETECTORS)
        both = sorted(set(a) & set(b))
        d = np.array([np.linalg.norm(a[k] - b[k]) for k in both])
        out[style]["embedding_shift"] = {"views": len(both), "mean": float(d.mean()), "p95": float(np.percentile(d, 95))} if both else None
    cols = "rank-1 | rank-1, learned metric | detected" if metric else "rank-1 | detected"
    print(f"\nPortrait identification, frontal enrolment, {args.renders} {args.views} views each ({cols}; over every view)")
    print(f"{'detector':<24}" + "".join(f" | {s:^30}" for s in styles))
    for name in DETECTORS:
        cells = [
            " | ".join(f"{out[s][name][key]:.3f}" for key in ("rank1", "rank1_metric", "detected") if key in out[s][name]) for s in styles
        ]
        print(f"{name:<24}" + "".join(f" | {c:^30}" for c in cells))
    if metric:
        print(f"  learned metric: {args.metric} ({metric.background})")
    for s in styles:
        e = out[s]["embedding_shift"]
        if e is None:
            print(f"  {s}: no view found by both detectors")
        else:
            print(
                f"  {s}: same view, YuNet box vs HOG box -> aligned chip -> embedding: L2 shift mean {e['mean']:.3f}, "
                f"p95 {e['p95']:.3f} over {e['views']} views (match threshold 0.42)"
            )
        for name in DETECTORS:
            r = out[s][name]
            by_sex = {k: r[k] for k in ("rank1_by_sex", "rank1_metric_by_sex") if k in r}
            print(f"  {s} / {name}: {r['identities']} identities ({r['enrolled']} enrolled), by sex {by_sex}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
