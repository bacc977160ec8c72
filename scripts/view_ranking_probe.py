"""Does the cloud rank auto levels against frames as they come as the live stream would?

The cloud picks a job's view on held-out uploads: frames shrunk to `sampler.max_side` and
JPEG-encoded, labelled by the teacher as they arrive (drifted). The bench scores the edge on the
raw drifted frames against the teacher's labels of the clean frame. This probe scores the bench's
student, untrained, both ways in each window of a schedule: raw frames against clean-frame
labels, uploads against clean-frame labels, uploads against the teacher's labels of the uploads
(BENCHMARKS.md, session 36).

    PYTHONPATH=. .venv/bin/python scripts/view_ranking_probe.py configs/drift/dev.yaml \\
        --windows 60-70,70-80,80-100,100-120,120-210,210-300,300-390,390-450
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from cloud_trainer.training import LabelledFrame, predictions
from edgesync.assets import edgesync_home, vtest_path
from edgesync.config import SamplerConfig
from edgesync.drift import DriftApplier, load_schedule
from edgesync.evaluation import map50
from edgesync.ground_truth import clean_ground_truth, read_video
from edgesync.types import detections_to_array
from edgesync.uploads import encode_jpeg
from edgesync_bench.runner import default_bench_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("drift", help="drift schedule (configs/drift/*.yaml)")
    parser.add_argument("--windows", default="60-80,80-120,120-210,210-300,300-390,390-450", help="FROM-TO,... seconds")
    parser.add_argument("--every", type=int, default=3, help="score every n-th frame of a window")
    parser.add_argument("--seed", type=int, default=0, help="the drift's random patterns")
    args = parser.parse_args()
    schedule = load_schedule(args.drift)
    student, teacher, _ = default_bench_student(str(vtest_path()), load_schedule("configs/drift/dev.yaml"))
    frames, fps = read_video(str(vtest_path()))
    clean_truth = clean_ground_truth(str(vtest_path()), teacher, edgesync_home() / "bench", frames)
    drift = DriftApplier(schedule, args.seed)
    views = {"none": student, "auto-levels": student.with_preprocess("auto-levels")}
    sampler = SamplerConfig()
    classes = len(student.class_names)

    def scores(images: list[np.ndarray], truth: list[np.ndarray]) -> str:
        unlabelled = [LabelledFrame(image, [], "") for image in images]
        marks = [map50(predictions(model, unlabelled), truth, classes) for model in views.values()]
        return " ".join(f"{100 * s:5.1f}" for s in marks)

    print("window (s)   raw, clean labels   upload, clean labels   upload, teacher on upload   (none / levels)")
    for window in args.windows.split(","):
        start, end = (float(v) for v in window.split("-"))
        raw, uploads, truth = [], [], []
        for index in range(int(start * fps), int(end * fps), args.every):
            image = drift.apply(frames[index % len(frames)], index / fps, index)
            encoded = encode_jpeg(image, sampler.jpeg_quality, sampler.max_side)
            raw.append(image)
            uploads.append(cv2.imdecode(np.frombuffer(encoded.jpeg, np.uint8), cv2.IMREAD_COLOR))
            truth.append(clean_truth[index % len(frames)])
        scaled = [t.copy() for t in truth]
        for t in scaled:
            t[:, :4] *= uploads[0].shape[1] / raw[0].shape[1]
        teacher_truth = [detections_to_array(d) for d in teacher.label(uploads)]
        print(
            f"{window:11s}  {scores(raw, truth):17s}   {scores(uploads, scaled):20s}   {scores(uploads, teacher_truth)}"
        )


if __name__ == "__main__":
    main()
