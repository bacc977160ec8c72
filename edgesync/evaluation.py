"""Detection accuracy: mAP at IoU 0.5 over a set of frames.

The cloud judges a candidate student against the current one with this, on fresh frames
labelled by the teacher, and the dashboard plots it per edge. Boxes are (N, 6) arrays of
``x1, y1, x2, y2, class_id, score`` in pixels (see ``edgesync.types.detections_to_array``).

Matching follows VOC/COCO: within each frame and class, predictions are taken in descending
score and each claims the unclaimed ground-truth box it overlaps most, if that IoU is at least
the threshold; AP is the area under the all-point interpolated precision-recall curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgesync.errors import InvalidInput

IOU_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4+) and (M, 4+) xyxy boxes as an (N, M) float64 array.

    Degenerate boxes (zero area) have IoU 0 with everything.
    """
    a = np.asarray(a, dtype=np.float64)[:, :4]
    b = np.asarray(b, dtype=np.float64)[:, :4]
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    wh = np.clip(np.minimum(a[:, None, 2:4], b[None, :, 2:4]) - np.maximum(a[:, None, 0:2], b[None, :, 0:2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_frame(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """For one frame, a bool per prediction (in the given order): does it match a ground-truth box?

    Greedy by descending score; a prediction matches only a box of its own class, and each
    ground-truth box is matched at most once (a duplicate detection is a false positive).
    """
    tp = np.zeros(len(pred), dtype=bool)
    if len(pred) == 0 or len(gt) == 0:
        return tp
    iou = box_iou(pred, gt)
    iou[np.rint(pred[:, 4])[:, None] != np.rint(gt[:, 4])[None, :]] = -1.0
    candidate = iou >= iou_threshold
    has_candidate = candidate.any(axis=1)
    if not has_candidate.any():
        return tp
    # No ground-truth box wanted by two predictions: the greedy pass would match each on its own.
    if candidate.sum(axis=0).max() <= 1:
        return has_candidate
    claimed = np.zeros(len(gt), dtype=bool)
    for i in np.argsort(-pred[:, 5], kind="stable"):
        if not has_candidate[i]:
            continue
        row = np.where(claimed, -1.0, iou[i])
        j = int(row.argmax())
        if row[j] >= iou_threshold:
            claimed[j] = True
            tp[i] = True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of one class from its predictions' match flags and scores.

    Precision at each rank is replaced by the best precision at any later rank (the monotone
    envelope); AP is the sum of that envelope over the ranks where recall rises.
    """
    if num_gt <= 0:
        raise InvalidInput("average precision needs at least one ground-truth box")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(tp, dtype=bool)[order]
    tp_cum = np.cumsum(hits)
    precision = tp_cum / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(envelope[hits].sum() / num_gt)


@dataclass(frozen=True)
class MatchedFrame:
    """One frame's predictions matched against its ground truth: all that AP needs of the frame.

    AP over a set of frames pools these, so a subset of frames (leave-one-out, below) costs no
    new matching.
    """

    tp: np.ndarray  # bool per prediction: matched a ground-truth box
    scores: np.ndarray
    classes: np.ndarray  # int64 class id per prediction
    num_gt: np.ndarray  # ground-truth boxes per class, (num_classes,)


def match_frames(
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    num_classes: int,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[MatchedFrame]:
    """Each frame's predictions matched against its ground truth (boxes checked and rounded)."""
    if len(predictions) != len(ground_truth):
        raise InvalidInput(
            f"{len(predictions)} prediction arrays but {len(ground_truth)} ground-truth arrays: one each per frame"
        )
    matched = []
    for index, (pred, gt) in enumerate(zip(predictions, ground_truth, strict=True)):
        pred = _check_boxes(pred, num_classes, "prediction", index)
        gt = _check_boxes(gt, num_classes, "ground truth", index)
        matched.append(
            MatchedFrame(
                tp=match_frame(pred, gt, iou_threshold),
                scores=pred[:, 5],
                classes=pred[:, 4].astype(np.int64),
                num_gt=np.bincount(gt[:, 4].astype(np.int64), minlength=num_classes),
            )
        )
    return matched


def pooled_ap50(frames: Sequence[MatchedFrame], num_classes: int) -> dict[int, float]:
    """AP per class over matched frames, for the classes that have ground truth among them."""
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for frame in frames:
        num_gt += frame.num_gt
    tp = np.concatenate([f.tp for f in frames]) if frames else np.zeros(0, dtype=bool)
    scores = np.concatenate([f.scores for f in frames]) if frames else np.zeros(0)
    classes = np.concatenate([f.classes for f in frames]) if frames else np.zeros(0, dtype=np.int64)
    result: dict[int, float] = {}
    for c in np.flatnonzero(num_gt):
        mine = classes == c
        result[int(c)] = average_precision(tp[mine], scores[mine], int(num_gt[c]))
    return result


def pooled_map50(frames: Sequence[MatchedFrame], num_classes: int) -> float:
    """map50 (below) of matched frames."""
    per_class = pooled_ap50(frames, num_classes)
    if not per_class:
        return 0.0 if any(len(f.tp) for f in frames) else 1.0
    return float(np.mean(list(per_class.values())))


def ap50_per_class(
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    num_classes: int,
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[int, float]:
    """AP per class over a set of frames, for the classes that have ground truth in the set."""
    return pooled_ap50(match_frames(predictions, ground_truth, num_classes, iou_threshold), num_classes)


def map50(predictions: list[np.ndarray], ground_truth: list[np.ndarray], num_classes: int) -> float:
    """mAP at IoU 0.5: the mean AP over the classes that have ground truth in this set of frames.

    Predictions of classes absent from the ground truth do not enter the mean. If no class has
    ground truth at all, there is nothing to find: the result is 1.0 when nothing was predicted
    either and 0.0 when anything was (every prediction is then a false positive).
    """
    return pooled_map50(match_frames(predictions, ground_truth, num_classes), num_classes)


def best_of_cross_validated(candidates: Sequence[Sequence[MatchedFrame]], num_classes: int) -> float:
    """mAP50 of "keep the candidate that scores best on these frames", without the optimism of
    choosing and judging on the same frames.

    candidates holds each candidate model's predictions on the frames, matched against their
    ground truth (match_frames; one MatchedFrame per frame, the frames in the same order for
    every candidate), so the many subsets below pool matches and never match again. Picking the
    best of several noisy scores and reporting that score overstates what the pick is worth:
    with a few dozen frames, a candidate can lead by luck.
    Leave-one-out removes the bias without giving up frames: each frame is scored with the
    predictions of the candidate that scores best on the *other* frames (ties: the earliest, as
    a strict "better than" keeps), and mAP50 is pooled over all frames as map50 does.
    With a single candidate there is no choice to correct: the result is its map50.
    """
    if not candidates:
        raise InvalidInput("best_of_cross_validated needs at least one candidate")
    if len({len(c) for c in candidates}) != 1:
        raise InvalidInput(f"candidates matched on different numbers of frames: {[len(c) for c in candidates]}")
    if len(candidates) == 1:
        return pooled_map50(candidates[0], num_classes)
    picked: list[MatchedFrame] = []
    for left_out in range(len(candidates[0])):
        scores = [pooled_map50([*m[:left_out], *m[left_out + 1 :]], num_classes) for m in candidates]
        picked.append(candidates[int(np.argmax(scores))][left_out])  # argmax: the earliest of ties
    return pooled_map50(picked, num_classes)


def paired_bootstrap_win_rate(
    candidate: Sequence[MatchedFrame],
    current: Sequence[MatchedFrame],
    num_classes: int,
    resamples: int = 1000,
    rng: np.random.Generator | None = None,
) -> float:
    """How often candidate scores a higher mAP50 than current on a bootstrap resample of the frames.

    Both models' matches are of the same frames, in the same order (match_frames). Each resample
    draws as many frames as there are, with replacement, and scores both models on the same draw
    (paired), so the share of draws the candidate wins (a tie counts half) says how much of its
    lead rests on the frames at hand: a lead won on one frame of four is lost whenever that frame
    is not drawn, one spread over most frames survives nearly every draw. Identical scores on
    every draw give 0.5.
    """
    if len(candidate) != len(current):
        raise InvalidInput(
            f"the two models were matched on different numbers of frames: {len(candidate)} and {len(current)}"
        )
    if not candidate:
        raise InvalidInput("a paired bootstrap needs at least one frame")
    if resamples < 1:
        raise InvalidInput(f"resamples must be at least 1, got {resamples}")
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(candidate)
    outcome: dict[tuple[int, ...], float] = {}  # a draw is a multiset of frames: few distinct ones for a few frames
    total = 0.0
    for _ in range(resamples):
        draw = tuple(sorted(rng.integers(0, n, n).tolist()))
        if draw not in outcome:
            a = pooled_map50([candidate[i] for i in draw], num_classes)
            b = pooled_map50([current[i] for i in draw], num_classes)
            outcome[draw] = 0.5 if abs(a - b) <= 1e-9 else float(a > b)
        total += outcome[draw]
    return total / resamples


def _check_boxes(boxes: np.ndarray, num_classes: int, what: str, index: int) -> np.ndarray:
    array = np.array(boxes, dtype=np.float64)  # a copy: class ids are rounded in place below
    if array.size == 0:
        return np.zeros((0, 6), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 6:
        raise InvalidInput(f"{what} of frame {index}: expected an (N, 6) array, got shape {array.shape}")
    classes = np.rint(array[:, 4])
    if (classes < 0).any() or (classes >= num_classes).any():
        bad = sorted({int(c) for c in classes if c < 0 or c >= num_classes})
        raise InvalidInput(f"{what} of frame {index}: class ids {bad} outside 0..{num_classes - 1}")
    array[:, 4] = classes
    return array
