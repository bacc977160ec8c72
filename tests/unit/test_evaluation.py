"""mAP50 and IoU: known cases worked by hand, and agreement with a literal VOC-devkit reference."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgesync.errors import InvalidInput
from edgesync.evaluation import best_of_cross_validated, box_iou, map50, match_frames, paired_bootstrap_win_rate
from edgesync.types import Detection, detections_to_array


def boxes(*rows: tuple[float, ...]) -> np.ndarray:
    """(N, 6) array from (x1, y1, x2, y2, class, score) tuples."""
    return np.asarray(rows, dtype=np.float32).reshape(-1, 6)


GT_A = (0, 0, 10, 10, 0, 1.0)
GT_B = (20, 20, 30, 30, 0, 1.0)
EMPTY = boxes()


def test_box_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]], dtype=np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.0])
    assert box_iou(a, np.zeros((0, 4))).shape == (2, 0)


def test_perfect_predictions_score_one():
    gt = [boxes(GT_A, GT_B), boxes((5, 5, 50, 60, 1, 1.0))]
    assert map50([g.copy() for g in gt], gt, num_classes=2) == pytest.approx(1.0)


def test_no_predictions_score_zero():
    assert map50([EMPTY, EMPTY], [boxes(GT_A), boxes(GT_B)], num_classes=1) == 0.0


def test_false_positive_ranked_above_the_true_positive_halves_ap():
    # ranks: FP (0.9), TP (0.8) -> precision 1/2 at full recall
    pred = boxes((50, 50, 60, 60, 0, 0.9), (0, 0, 10, 10, 0, 0.8))
    assert map50([pred], [boxes(GT_A)], num_classes=1) == pytest.approx(0.5)


def test_false_positive_between_two_true_positives_uses_the_precision_envelope():
    # ranks: TP, FP, TP -> recall 0.5 at precision 1, recall 1 at precision 2/3 -> AP 5/6
    pred = boxes((0, 0, 10, 10, 0, 0.9), (50, 50, 60, 60, 0, 0.8), (20, 20, 30, 30, 0, 0.7))
    assert map50([pred], [boxes(GT_A, GT_B)], num_classes=1) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ranking_is_across_frames_not_within_each_frame():
    # the FP in frame 1 outranks the TP in frame 0
    frame0 = boxes((0, 0, 10, 10, 0, 0.5))
    frame1 = boxes((50, 50, 60, 60, 0, 0.9))
    assert map50([frame0, frame1], [boxes(GT_A), EMPTY], num_classes=1) == pytest.approx(0.5)


def test_duplicate_detection_of_one_box_is_a_false_positive():
    pred = boxes((0, 0, 10, 10, 0, 0.9), (0, 0, 10, 10.5, 0, 0.8), (20, 20, 30, 30, 0, 0.7))
    assert map50([pred], [boxes(GT_A, GT_B)], num_classes=1) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_higher_score_claims_the_box_even_when_a_lower_score_overlaps_it_more():
    # both overlap GT_A; the 0.9 one (IoU 0.6) claims it, the 0.8 one (IoU 1.0) is a duplicate
    pred = boxes((0, 0, 10, 6, 0, 0.9), (0, 0, 10, 10, 0, 0.8))
    assert map50([pred], [boxes(GT_A)], num_classes=1) == pytest.approx(1.0)
    pred_low_first = boxes((0, 0, 10, 6, 0, 0.7), (0, 0, 10, 10, 0, 0.8))
    assert map50([pred_low_first], [boxes(GT_A)], num_classes=1) == pytest.approx(1.0)


def test_prediction_of_the_wrong_class_does_not_match():
    pred = boxes((0, 0, 10, 10, 1, 0.9))
    assert map50([pred], [boxes(GT_A)], num_classes=2) == 0.0


def test_predictions_of_classes_without_ground_truth_do_not_enter_the_mean():
    pred = boxes((0, 0, 10, 10, 0, 0.9), (40, 40, 50, 50, 1, 0.99))
    assert map50([pred], [boxes(GT_A)], num_classes=2) == pytest.approx(1.0)


def test_map_is_the_mean_over_classes_with_ground_truth():
    gt = boxes(GT_A, (40, 40, 50, 50, 1, 1.0))
    pred = boxes((0, 0, 10, 10, 0, 0.9), (70, 70, 80, 80, 1, 0.9), (40, 40, 50, 50, 1, 0.8))
    assert map50([pred], [gt], num_classes=2) == pytest.approx((1.0 + 0.5) / 2)


def test_iou_of_exactly_half_matches_and_just_below_does_not():
    at_threshold = boxes((0, 0, 10, 5, 0, 0.9))  # IoU 50/100
    below = boxes((0, 0, 10, 4.9, 0, 0.9))  # IoU 49/100
    assert map50([at_threshold], [boxes(GT_A)], num_classes=1) == pytest.approx(1.0)
    assert map50([below], [boxes(GT_A)], num_classes=1) == 0.0


def test_without_any_ground_truth_empty_predictions_score_one_and_any_prediction_zero():
    assert map50([EMPTY, EMPTY], [EMPTY, EMPTY], num_classes=2) == 1.0
    assert map50([EMPTY, boxes(GT_A)], [EMPTY, EMPTY], num_classes=2) == 0.0
    assert map50([], [], num_classes=2) == 1.0


def test_accepts_arrays_from_detections():
    dets = [Detection(0, 0, 10, 10, 0, 0.9), Detection(20, 20, 30, 30, 0, 0.8)]
    gt = detections_to_array([Detection(0, 0, 10, 10, 0), Detection(20, 20, 30, 30, 0)])
    assert map50([detections_to_array(dets)], [gt], num_classes=1) == pytest.approx(1.0)
    assert map50([detections_to_array([])], [gt], num_classes=1) == 0.0


def test_does_not_modify_its_inputs():
    pred = np.array([[0, 0, 10, 10, 0.2, 0.9]])
    map50([pred], [boxes(GT_A)], num_classes=1)
    assert pred[0, 4] == 0.2


def test_class_id_out_of_range_is_rejected_with_the_frame_named():
    with pytest.raises(InvalidInput, match="frame 1"):
        map50([EMPTY, EMPTY], [boxes(GT_A), boxes((0, 0, 5, 5, 3, 1.0))], num_classes=2)
    with pytest.raises(InvalidInput, match="class ids"):
        map50([boxes((0, 0, 5, 5, -1, 0.5))], [boxes(GT_A)], num_classes=2)


def test_mismatched_frame_counts_and_shapes_are_rejected():
    with pytest.raises(InvalidInput, match="one each per frame"):
        map50([EMPTY], [EMPTY, EMPTY], num_classes=1)
    with pytest.raises(InvalidInput, match=r"\(N, 6\)"):
        map50([np.zeros((2, 4))], [boxes(GT_A)], num_classes=1)


def voc_reference_map50(predictions, ground_truth, num_classes):
    """The VOC devkit procedure written out loop by loop, as an independent check."""
    aps = []
    for c in range(num_classes):
        gts = {f: [g for g in gt if int(g[4]) == c] for f, gt in enumerate(ground_truth)}
        npos = sum(len(v) for v in gts.values())
        if npos == 0:
            continue
        used = {f: [False] * len(v) for f, v in gts.items()}
        dets = [(float(p[5]), f, p) for f, pred in enumerate(predictions) for p in pred if int(p[4]) == c]
        dets.sort(key=lambda d: -d[0])  # stable, as the implementation under test
        tp, fp = [], []
        for _, f, p in dets:
            best, best_j = -1.0, -1
            for j, g in enumerate(gts[f]):
                if used[f][j]:
                    continue
                iw = min(p[2], g[2]) - max(p[0], g[0])
                ih = min(p[3], g[3]) - max(p[1], g[1])
                inter = max(iw, 0) * max(ih, 0)
                union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                iou = inter / union
                if iou > best:
                    best, best_j = iou, j
            if best >= 0.5:
                used[f][best_j] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        rec, prec, t, ff = [], [], 0, 0
        for a, b in zip(tp, fp, strict=True):
            t, ff = t + a, ff + b
            rec.append(t / npos)
            prec.append(t / (t + ff))
        mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        aps.append(sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
    return float(np.mean(aps)) if aps else None


def random_frames(rng: np.random.Generator, n_frames: int, num_classes: int):
    predictions, ground_truth = [], []
    for _ in range(n_frames):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        gt = np.c_[xy, xy + rng.uniform(10, 60, (n, 2)), rng.integers(0, num_classes, n), np.ones(n)]
        pred = gt.copy()
        pred[:, :4] += rng.normal(0, 6, (n, 4))
        pred[:, 4] = np.where(rng.uniform(size=n) < 0.1, rng.integers(0, num_classes, n), pred[:, 4])
        pred[:, 5] = rng.uniform(0, 1, n)
        extra = int(rng.integers(0, 3))
        exy = rng.uniform(0, 200, (extra, 2))
        noise = np.c_[exy, exy + 30, rng.integers(0, num_classes, extra), rng.uniform(0, 1, extra)]
        dup = pred[:1].copy()
        dup[:, 5] *= 0.5
        predictions.append(np.r_[pred, noise, dup].astype(np.float32))
        ground_truth.append(gt.astype(np.float32))
    return predictions, ground_truth


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_the_voc_devkit_procedure_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    predictions, ground_truth = random_frames(rng, 40, 3)
    expected = voc_reference_map50(predictions, ground_truth, 3)
    assert expected is not None
    assert map50(predictions, ground_truth, 3) == pytest.approx(expected, abs=1e-9)


def test_thousands_of_frames_per_second():
    predictions, ground_truth = random_frames(np.random.default_rng(0), 3000, 2)
    start = time.perf_counter()
    map50(predictions, ground_truth, 2)
    assert time.perf_counter() - start < 1.5  # about 0.15 s here; the budget is generous for slow CI


# best_of_cross_validated: four frames with one box each; a candidate "hits" a frame by predicting its box
def _hits(*frames: int) -> list[np.ndarray]:
    return [boxes(GT_A) if i in frames else EMPTY for i in range(4)]


FOUR_FRAMES = [boxes(GT_A)] * 4


def _matched(*candidates: list[np.ndarray]):
    return [match_frames(c, FOUR_FRAMES, 1) for c in candidates]


def test_cross_validation_removes_the_lead_each_frame_alone_gives_the_best_candidate():
    # each candidate leads only thanks to the one frame it alone gets right: picked without that
    # frame, another candidate is chosen, which misses it
    candidates = [_hits(0, 1, 2), _hits(0, 1, 3), _hits(0, 2, 3)]
    assert max(map50(c, FOUR_FRAMES, 1) for c in candidates) == pytest.approx(0.75)
    assert best_of_cross_validated(_matched(*candidates), 1) == pytest.approx(0.25)


def test_cross_validation_keeps_the_score_of_a_candidate_that_leads_on_every_subset():
    candidates = [_hits(0, 1, 2), _hits(0, 1), _hits(0)]
    assert best_of_cross_validated(_matched(*candidates), 1) == pytest.approx(0.75)


def test_cross_validation_of_one_candidate_is_its_map50():
    assert best_of_cross_validated(_matched(_hits(1, 2)), 1) == pytest.approx(0.5)
    with pytest.raises(InvalidInput, match="at least one candidate"):
        best_of_cross_validated([], 1)


# paired_bootstrap_win_rate: the same four frames, one box each (_hits above)
def _win_rate(candidate: list[np.ndarray], current: list[np.ndarray], resamples: int = 20_000, seed: int = 0) -> float:
    matched_candidate, matched_current = _matched(candidate, current)
    return paired_bootstrap_win_rate(matched_candidate, matched_current, 1, resamples, np.random.default_rng(seed))


def test_a_model_against_itself_wins_half_the_resamples():
    assert _win_rate(_hits(0, 2), _hits(0, 2)) == 0.5


def test_a_lead_on_one_frame_is_kept_only_on_the_resamples_that_draw_it():
    # frame 3 is missing from a draw of four with probability (3/4)^4: then the two tie (half a win)
    assert _win_rate(_hits(0, 1, 2, 3), _hits(0, 1, 2)) == pytest.approx(1 - 0.75**4 / 2, abs=0.01)


def test_a_lead_on_two_frames_survives_more_resamples_than_one_on_one_frame():
    # both frames 2 and 3 missing: (1/2)^4
    assert _win_rate(_hits(0, 1, 2, 3), _hits(0, 1)) == pytest.approx(1 - 0.5**4 / 2, abs=0.01)


def test_a_worse_model_wins_less_than_half():
    assert _win_rate(_hits(0), _hits(0, 1, 2)) < 0.5


def test_the_win_rate_repeats_with_the_same_generator_seed():
    assert _win_rate(_hits(0, 1, 3), _hits(1, 2), 500, seed=7) == _win_rate(_hits(0, 1, 3), _hits(1, 2), 500, seed=7)


def test_the_bootstrap_refuses_unpaired_or_missing_frames():
    four = match_frames(_hits(0), FOUR_FRAMES, 1)
    with pytest.raises(InvalidInput, match="different numbers of frames: 4 and 3"):
        paired_bootstrap_win_rate(four, four[:3], 1)
    with pytest.raises(InvalidInput, match="at least one frame"):
        paired_bootstrap_win_rate([], [], 1)
    with pytest.raises(InvalidInput, match="resamples must be at least 1, got 0"):
        paired_bootstrap_win_rate(four, four, 1, resamples=0)
