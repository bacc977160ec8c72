"""Does a change-point's scene keep changing after it fires? What the detector could tell the cloud.

A gradual drift (dusk over 20 s) fires early in its ramp, and the frames the edge uploads first
(the burst after a change) show the ramp's start, not the scene it settles in; a job trained on
them meets the dark end with a model for the light one (BENCHMARKS.md, session 36). The detector
already waits for the new scene to settle before it looks for the next change. This probe replays
a schedule through it (the bench's student running on each looked-at frame, as on the edge) and,
for every change-point, compares the fast level's picture SWAP_SETTLE_TAUS fast time constants
after the firing (by then a sudden change has fully arrived at the fast level) with its picture
when the scene settles, on the image statistics, in units of the detector's threshold.

    PYTHONPATH=. .venv/bin/python scripts/settle_probe.py configs/drift/dev.yaml --seed 0
"""

from __future__ import annotations

import argparse

import numpy as np

from edgesync.assets import vtest_path
from edgesync.changepoint import IMAGE_DIMS, SWAP_SETTLE_TAUS, SceneWatcher
from edgesync.config import ChangePointConfig
from edgesync.drift import DriftApplier, load_schedule
from edgesync.ground_truth import read_video
from edgesync_bench.runner import default_bench_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("drift", help="drift schedule (configs/drift/*.yaml)")
    parser.add_argument("--seed", type=int, default=0, help="the drift's random patterns")
    args = parser.parse_args()
    schedule = load_schedule(args.drift)
    student, _, _ = default_bench_student(str(vtest_path()), load_schedule("configs/drift/dev.yaml"))
    frames, fps = read_video(str(vtest_path()))
    drift = DriftApplier(schedule, args.seed)
    watcher = SceneWatcher(ChangePointConfig())
    detector = watcher.detector
    fired_at: float | None = None
    arrived: np.ndarray | None = None  # the fast level SWAP_SETTLE_TAUS after the firing

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        assert detector._spread is not None
        spread = detector._spread[:IMAGE_DIMS]
        return float(np.sum((a[:IMAGE_DIMS] - b[:IMAGE_DIMS]) ** 2 / (spread + 1e-6))) / detector.threshold

    print("change-point (s)  condition         settled (s)  moved after arriving (x threshold)")
    for index in range(int(schedule.duration_s * fps)):
        t = index / fps
        if not watcher.due(t):
            continue
        image = drift.apply(frames[index % len(frames)], t, index)
        scores = np.array([d.score for d in student.predict([image])[0].detections], np.float32)
        settling = detector._settling
        point = watcher.watch(t, image, scores)
        assert detector.fast.mean is not None
        if point is not None:
            fired_at, arrived = t, None
        elif fired_at is not None and arrived is None and t >= fired_at + SWAP_SETTLE_TAUS * detector.cfg.fast_s:
            arrived = detector.fast.mean.copy()
        elif settling and not detector._settling and fired_at is not None and arrived is not None:
            moved = distance(detector.fast.mean, arrived)
            print(f"{fired_at:16.1f}  {drift.condition_at(fired_at):16s}  {t:11.1f}  {moved:8.2f}")
            fired_at = None


if __name__ == "__main__":
    main()
