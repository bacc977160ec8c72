"""Bootstrapping the first student from the teacher: no hub weights, ever.

Frames from the first clean stretch of a video are labelled by the teacher, a student is
trained from its YAML on them, and the result is registered as the base model every new
edge starts from.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cloud_trainer.registry import ModelRegistry
from cloud_trainer.training import LabelledFrame, evaluate, fine_tune
from edgesync.config import DistillConfig, TrainingConfig
from edgesync.errors import SourceError
from edgesync.student import DEFAULT_ARCH, StudentModel
from edgesync.teachers import Teacher
from edgesync.types import ModelManifest

log = logging.getLogger(__name__)


@dataclass
class BootstrapSettings:
    """What the bootstrap trains on and how; part of the cache key for benchmarks."""

    seconds: float = 60.0  # use frames from the first this-many seconds (a clean stretch)
    frames: int = 240  # evenly spaced frames taken from that stretch
    epochs: int = 30
    imgsz: int = 320
    arch: str = DEFAULT_ARCH
    val_every: int = 8  # every n-th frame is held out for validation


def _open(video: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise SourceError(f"cannot open video {video!r}")
    return capture


def _header(capture: cv2.VideoCapture) -> tuple[float, int]:
    """(frames per second, frame count or 0 where the container does not say)."""
    return capture.get(cv2.CAP_PROP_FPS) or 25.0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)


def _span(capture: cv2.VideoCapture, seconds: float) -> int:
    fps, total = _header(capture)
    span = int(seconds * fps)
    return min(span, total) if total else span


def video_length_s(video: str) -> float | None:
    """The video's length in seconds from its header; None where the container does not say."""
    capture = _open(video)
    try:
        fps, total = _header(capture)
    finally:
        capture.release()
    return total / fps if total else None


def frames_spanned(video: str, seconds: float) -> int:
    """How many frames from the start of video its first seconds cover: read_frames draws from
    frames 0 to this (exclusive)."""
    capture = _open(video)
    try:
        return _span(capture, seconds)
    finally:
        capture.release()


def read_frames(video: str, seconds: float, count: int) -> list[np.ndarray]:
    """count frames evenly spaced over the first seconds of video."""
    capture = _open(video)
    span = _span(capture, seconds)
    wanted = set(np.linspace(0, max(span - 1, 0), num=min(count, max(span, 1))).round().astype(int).tolist())
    frames, index = [], 0
    while index < span and len(frames) < len(wanted):
        ok, image = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(image)
        index += 1
    capture.release()
    if not frames:
        raise SourceError(f"no readable frames in the first {seconds:.0f} s of {video!r}")
    return frames


def label_frames(
    teacher: Teacher, frames: list[np.ndarray], batch: int = 8, progress: Callable[[int], None] | None = None
) -> list[LabelledFrame]:
    labelled = []
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        for j, (image, boxes) in enumerate(zip(chunk, teacher.label(chunk), strict=True)):
            labelled.append(LabelledFrame(image, boxes, f"boot{i + j:05d}"))
        if progress:
            progress(len(chunk))
    return labelled


def bootstrap_student(
    video: str,
    teacher: Teacher,
    registry: ModelRegistry,
    training: TrainingConfig,
    settings: BootstrapSettings,
    on_label: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> ModelManifest:
    """Train a student from scratch on teacher labels of the video's first clean frames; register it as base."""
    started = time.time()
    frames = read_frames(video, settings.seconds, settings.frames)
    labelled = label_frames(teacher, frames, progress=on_label)
    val = labelled[:: settings.val_every]
    train = [f for i, f in enumerate(labelled) if i % settings.val_every]
    student = StudentModel.fresh(list(teacher.class_names), settings.imgsz, settings.arch)
    # distillation is for fine-tunes of a working student; the first training learns the boxes alone
    cfg = training.model_copy(update={"imgsz": settings.imgsz, "distill": DistillConfig()})
    with tempfile.TemporaryDirectory(prefix="edgesync-bootstrap-") as tmp:
        trained = fine_tune(
            student, train, val, cfg, Path(tmp), epochs=settings.epochs, on_epoch=on_epoch, from_scratch=True
        ).model
    score = evaluate(trained, val)
    data, _ = trained.encode()
    manifest = trained.manifest(
        data,
        parent=0,
        metrics={"map50": score, "train_frames": float(len(train)), "train_seconds": time.time() - started},
    )
    stored = registry.register(None, data, manifest)
    log.info(
        "bootstrapped base v%d from %s: mAP50 %.3f on %d held-out frames",
        stored.version,
        video,
        score,
        len(val),
    )
    return stored
