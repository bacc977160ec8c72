"""What auto levels cost a levelled model, against its prediction, in one process.

On the bench's student and vtest.avi's first frames, each frame in turn is predicted on (frames
as they come), levelled by today's edgesync.preprocess.auto_levels and levelled by the session
35 version kept below (its histograms counted over the strided view frame[::4, ::4]); the
medians of each are printed with their share of the prediction. Interleaving the three keeps
the machine's load alike for all of them (BENCHMARKS.md, session 36).

    PYTHONPATH=. .venv/bin/python scripts/levels_cost.py --frames 300 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from edgesync.assets import vtest_path
from edgesync.drift import load_schedule
from edgesync.ground_truth import read_video
from edgesync.preprocess import CLIP, SAMPLE_STEP, auto_levels, levels_affine
from edgesync_bench.runner import default_bench_student


def strided_auto_levels(frame: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """Session 35's auto levels: the same stretch, its histograms counted over a strided view."""
    return cv2.transform(frame, levels_affine(frame[::SAMPLE_STEP, ::SAMPLE_STEP], clip))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="first frames of vtest.avi to use")
    parser.add_argument("--rounds", type=int, default=3, help="passes over those frames")
    args = parser.parse_args()
    frames, _ = read_video(str(vtest_path()))
    frames = frames[: args.frames]
    student, _, _ = default_bench_student(str(vtest_path()), load_schedule("configs/drift/dev.yaml"))
    student.warmup()
    steps = {"predict": lambda f: student.predict([f]), "auto_levels": auto_levels, "strided": strided_auto_levels}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for frame in frames:
            for name, step in steps.items():
                start = time.perf_counter()
                step(frame)
                times[name].append(time.perf_counter() - start)
    predict = statistics.median(times["predict"])
    for name, spent in times.items():
        ms = statistics.median(spent) * 1000
        print(f"{name:12s} median {ms:7.3f} ms  {statistics.median(spent) / predict:6.4f} of predict")
    unchanged = all(np.array_equal(auto_levels(f), strided_auto_levels(f)) for f in frames)
    print(f"levelled frames identical to the strided version's: {unchanged}")


if __name__ == "__main__":
    main()
