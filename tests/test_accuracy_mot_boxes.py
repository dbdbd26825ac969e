"""edge.evaluate compares the renderer's 1-based gt.txt with `paxsim detect`'s 0-based boxes in one convention."""

from edge.evaluate import evaluate


def test_gt_is_read_one_based_and_detections_zero_based(tmp_path):
    gt = tmp_path / "gt.txt"
    det = tmp_path / "det.txt"
    # one 24-px face moving right; gt.txt: x, y 1-based (MOTChallenge), det: the same pixels 0-based (paxsim detect)
    gt.write_text("".join(f"{f},1,{11 + 2 * f},{21},24,24,1,1,1.0\n" for f in range(1, 6)))
    det.write_text("".join(f"{f},7,{10 + 2 * f},{20},24,24,0.9,-1,-1,-1\n" for f in range(1, 6)))
    rep = evaluate(gt, det, min_px=20)
    assert rep["detection"]["recall_ge_20px"] == 1.0
    assert rep["tracking"]["motp"] < 1e-9  # identical boxes once both are 0-based (1 px off each way: 0.15)
    one = tmp_path / "det1.txt"  # a MOTChallenge-convention (1-based) detection file
    one.write_text(gt.read_text())
    assert evaluate(gt, one, min_px=20, det_one_based=True)["tracking"]["motp"] < 1e-9
