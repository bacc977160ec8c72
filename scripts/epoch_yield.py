"""How much of a fine-tune's held-out gain its first epochs win, from the jobs benchmarks recorded.

    python scripts/epoch_yield.py docs/bench/*-s3*-results.json

Every job that trained its full epochs from the start (not resumed, not cut short by the budget)
recorded its held-out mAP50 after each epoch (`map50_epoch_N` in results.json). For each
length L it prints the mean gain of the best of the first L epochs over the model before, as a
share of the best of all of them, and what a patience stop (training.patience) would have kept
and run. If the first epochs won most of the gain, shorter jobs would be a cheap way to serve
more of them on a saturated worker; the share growing with L says each epoch still pays.
The best of more epochs is also the maximum of more noisy scores on a handful of frames, so the
shares of short lengths are, if anything, too low.

Last, how well a job's own curve foresees its gain still to come (`LearningCurve.gain_to_come`, what
training.preempt_by "gain_rate" weighs): after each epoch k, the mean predicted and achieved gain
beyond the best of the first k epochs, the prediction's mean absolute error against that of
predicting none, and the correlation of the two over the jobs; and how well the manager's
prediction when it queued the job (`queued_gain`, what ranks it) foresees the gain of all its epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from cloud_trainer.profiler import LearningCurve


def curves(paths: list[Path], epochs: int) -> list[tuple[float, list[float], float | None]]:
    """(held-out mAP50 before, after each epoch, the manager's predicted gain when it queued the job)
    of every job that trained `epochs` from the start."""
    out = []
    for path in paths:
        result = json.loads(path.read_text())
        for strategy in result["strategies"].values():
            for camera in (strategy.get("per_camera") or {"": strategy}).values():
                for job in camera.get("jobs", []):
                    points = [job.get(f"map50_epoch_{i}") for i in range(1, epochs + 1)]
                    if None not in points and not job.get("resumed_from_epoch"):
                        out.append((job["map50_before"], points, job.get("queued_gain")))
    return out


def patience_stop(before: float, points: list[float], patience: int) -> int:
    """Epochs a job runs with training.patience: the worker's own stop (LearningCurve.stop_reason)."""
    curve = LearningCurve(before, len(points), patience)
    for n, score in enumerate(points, start=1):
        curve.add(score)
        if curve.stop_reason() is not None:
            return n
    return len(points)


def to_come(before: float, points: list[float], after: int) -> tuple[float, float]:
    """(predicted, achieved) held-out gain beyond the best of the first `after` epochs."""
    curve = LearningCurve(before, len(points), 0)
    for score in points[:after]:
        curve.add(score)
    return curve.gain_to_come() or 0.0, max(0.0, max(points) - max(points[:after]))


def correlation(xs: list[float], ys: list[float]) -> float:
    """Pearson's r, nan where either side is constant (statistics.correlation refuses those)."""
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="results.json files of `edgesync bench`")
    parser.add_argument("--epochs", type=int, default=10, help="the jobs' planned epochs (the bench's: 10)")
    args = parser.parse_args()
    recorded = curves(args.results, args.epochs)
    jobs = [(before, points) for before, points, _ in recorded]
    if not jobs:
        parser.error(f"no job in those files trained {args.epochs} epochs from the start")
    full = sum(max(0.0, max(p) - b) for b, p in jobs) / len(jobs)
    print(f"{len(jobs)} jobs; mean held-out gain of the best of {args.epochs} epochs: {full:.3f}")
    print("best of the first L epochs, as a share of that:")
    for length in range(1, args.epochs + 1):
        kept = sum(max(0.0, max(p[:length]) - b) for b, p in jobs) / len(jobs)
        print(f"  L={length:2d}: {kept / full:.2f} of the gain for {length / args.epochs:.2f} of the work")
    for patience in (1, 2, 3, 4):
        stops = [patience_stop(b, p, patience) for b, p in jobs]
        kept = sum(max(0.0, max(p[:n]) - b) for (b, p), n in zip(jobs, stops, strict=True)) / len(jobs)
        work = sum(stops) / len(stops) / args.epochs
        print(f"  patience {patience}: {kept / full:.2f} of the gain for {work:.2f} of the work")
    print("gain still to come after epoch k (LearningCurve.gain_to_come): predicted / achieved, mean")
    print("absolute error (predicting none: the achieved mean), correlation over the jobs:")
    for after in range(2, args.epochs):
        predicted, achieved = zip(*(to_come(b, p, after) for b, p in jobs), strict=True)
        means = f"{statistics.fmean(predicted):.3f} / {statistics.fmean(achieved):.3f}"
        error = statistics.fmean(abs(x - y) for x, y in zip(predicted, achieved, strict=True))
        print(f"  k={after}: {means}, error {error:.3f}, r {correlation(predicted, achieved):.2f}")
    queued = [(q, max(0.0, max(p) - b)) for b, p, q in recorded if q is not None]
    if queued:
        predicted, achieved = zip(*queued, strict=True)
        print(
            f"the manager's predicted gain when it queued the job (queued_gain), {len(queued)} jobs: mean "
            f"{statistics.fmean(predicted):.3f} against {statistics.fmean(achieved):.3f} achieved "
            f"(best of all epochs), r {correlation(predicted, achieved):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
