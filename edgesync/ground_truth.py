"""Ground truth for accuracy: the teacher run on every *clean* frame of a video, cached on disk.

The system under test only ever sees drifted frames; scoring against the teacher's view of
the clean frame measures what drift costs and what adaptation wins back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgesync.errors import SourceError
from edgesync.teachers import Teacher
from edgesync.types import detections_to_array


def read_video(path: str) -> tuple[list[np.ndarray], float]:
    """Every frame of a video file in memory, and its frame rate."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path!r}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise SourceError(f"video {path!r} has no readable frames")
    return frames, (fps if 1.0 <= fps <= 240.0 else 25.0)


def clean_ground_truth(
    video: str,
    teacher: Teacher,
    cache_dir: Path,
    frames: list[np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Teacher boxes, (N, 6) arrays, for every clean frame of video; cached by video and teacher."""
    stat = Path(video).stat()
    key = hashlib.sha256(f"{Path(video).resolve()}:{stat.st_size}:{teacher.labels_key}".encode())
    cache = Path(cache_dir) / f"clean-gt-{key.hexdigest()[:16]}.npz"
    if cache.exists():
        with np.load(cache) as data:
            return [data[f"f{i}"] for i in range(len(data.files))]
    if frames is None:
        frames, _ = read_video(video)
    truth: list[np.ndarray] = []
    for start in range(0, len(frames), 8):
        batch = frames[start : start + 8]
        truth.extend(detections_to_array(d) for d in teacher.label(batch))
        if progress is not None:
            progress(len(truth), len(frames))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **{f"f{i}": t for i, t in enumerate(truth)})
    tmp.replace(cache)
    return truth
