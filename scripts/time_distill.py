"""Measure what distillation adds to a fine-tune: seconds per image-epoch with it off, with
attention distillation and with attention+generative, on real vtest.avi frames labelled by the
SSD teacher (yolov8n at 320 px, batch 16, the benchmark's recipe). The modes alternate
(off, attention, generative, off again...) so a busy machine slows all of them alike; the
ratios to "off" are what edgesync_bench/costs.py charges on top of its reference
train_s_per_image_epoch.

    .venv/bin/python scripts/time_distill.py [--images 32] [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from cloud_trainer.distill_training import TeacherFeatures
from cloud_trainer.training import LabelledFrame, fine_tune
from edgesync.assets import vtest_path
from edgesync.config import DistillConfig, SSDTeacherConfig, TrainingConfig
from edgesync.student import StudentModel
from edgesync.teachers.ssd import SSDTeacher

MODES = ("off", "attention", "attention+generative")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    teacher = SSDTeacher(SSDTeacherConfig(classes=["person", "car"]))
    capture = cv2.VideoCapture(str(vtest_path()))
    images = []
    while len(images) < args.images:
        ok, frame = capture.read()
        if not ok:
            break
        images.append(frame)
    labels = teacher.label(images)
    frames = [LabelledFrame(im, dets, f"{i:04d}") for i, (im, dets) in enumerate(zip(images, labels, strict=True))]
    student = StudentModel.fresh(teacher.class_names, 320, "yolov8n.yaml")
    per_image_epoch: dict[str, list[float]] = {m: [] for m in MODES}
    teacher_s: list[float] = []
    for _ in range(args.rounds):
        for mode in MODES:
            cfg = TrainingConfig(epochs=args.epochs, distill=DistillConfig(mode=mode))
            features = TeacherFeatures(teacher) if mode != "off" else None
            ends: list[float] = []  # epoch ends: the time between the first and the last is pure training

            def epoch_end(done: int, total: int, ends: list[float] = ends) -> None:
                ends.append(time.perf_counter())

            with tempfile.TemporaryDirectory() as tmp:
                fine_tune(student, frames, frames[:4], cfg, Path(tmp), teacher=features, on_epoch=epoch_end)
            per_image_epoch[mode].append((ends[-1] - ends[0]) / ((len(ends) - 1) * len(frames)))
            if features is not None:
                teacher_s.append(features.seconds / features.images)
    off = statistics.median(per_image_epoch["off"])
    for mode in MODES:
        value = statistics.median(per_image_epoch[mode])
        print(f"{mode:22s} {value * 1000:7.1f} ms per image-epoch  ({value / off:.2f}x off)")
    print(f"teacher features       {statistics.median(teacher_s) * 1000:7.1f} ms per training image")


if __name__ == "__main__":
    main()
