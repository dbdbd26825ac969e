from __future__ import annotations

import math

import pytest

from edge.evaluate import detection_recall, evaluate, load_mot, tracking_metrics


def write(path, rows):
    path.write_text("".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def gt_rows():
    rows = []
    for f in range(1, 11):
        rows.append((f, 1, 10 + 5 * f, 20, 70, 70, 1, 1, 1.0))  # big face
        rows.append((f, 2, 300, 40, 30, 30, 1, 1, 1.0))  # small face
        rows.append((f, 3, 500, 40, 12, 12, 0, 1, 0.3))  # don't care
    return rows


def test_perfect_tracks_score_one(tmp_path):
    gt = write(tmp_path / "gt.txt", gt_rows())
    det = write(tmp_path / "det.txt", [(f, i, x, y, w, h, 1, -1, -1, -1) for f, i, x, y, w, h, *_ in gt_rows()])
    rep = evaluate(gt, det)
    assert rep["detection"]["recall_ge_60px"] == 1.0
    assert rep["detection"]["false_positives"] == 0  # the don't-care hit is not a false positive
    assert rep["tracking"]["idf1"] == pytest.approx(1.0)
    assert rep["tracking"]["num_switches"] == 0


def test_recall_bins_and_id_switch(tmp_path):
    gt = load_mot(write(tmp_path / "gt.txt", gt_rows()))
    # Only the big face is found; its id changes half-way; plus one false positive.
    rows = [(f, 7 if f <= 5 else 8, 10 + 5 * f, 20, 70, 70, 1, -1, -1, -1) for f in range(1, 11)]
    rows.append((3, 9, 700, 300, 50, 50, 1, -1, -1, -1))
    dt = load_mot(write(tmp_path / "det.txt", rows))
    rep = detection_recall(gt, dt)
    by = {b.label: b for b in rep.bins}
    assert by["20-40 px"].recall == 0.0 and by["20-40 px"].faces == 10
    assert by["60-80 px"].recall == 1.0
    assert math.isnan(by[">= 120 px"].recall)
    assert rep.recall_at_least_min == 1.0 and rep.false_positives == 1
    t_all = tracking_metrics(gt, dt)
    t_big = tracking_metrics(gt, dt, min_px=60)
    assert t_all["num_switches"] == 1
    assert t_all["idf1"] < t_big["idf1"] < 1.0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such MOT file"):
        load_mot(tmp_path / "nope.txt")
