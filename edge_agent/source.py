"""Video sources: a file, an RTSP/HTTP URL or a camera index, read with OpenCV.

A file can be paced at its frame rate like a live camera and replayed in a loop; an optional
drift schedule is applied to every frame (for demos and benchmarks), and each frame carries
its position in the file so evaluation can compare with the clean original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from edgesync.drift import DriftApplier, DriftSchedule
from edgesync.errors import SourceError

log = logging.getLogger(__name__)

LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")
RECONNECT_ATTEMPTS = 5


@dataclass
class Frame:
    """One frame as the edge sees it."""

    index: int  # frames since the source started
    video_index: int  # position in the file (index for live sources)
    t_s: float  # stream time: index / fps for files, seconds since start for live sources
    capture_time: float  # wall clock, seconds since the Unix epoch
    image: np.ndarray  # BGR, drift applied
    condition: str  # drift segment name, "live" without a schedule


def is_live(uri: str) -> bool:
    return uri.startswith(LIVE_PREFIXES) or uri.isdigit()


def open_capture(uri: str) -> cv2.VideoCapture:
    """Open a file, URL or camera index, or raise SourceError naming it."""
    capture = cv2.VideoCapture(int(uri) if uri.isdigit() else uri)
    if not capture.isOpened():
        raise SourceError(f"cannot open video source {uri!r}")
    return capture


class VideoSource:
    """Iterates frames from uri, applying schedule if given."""

    def __init__(
        self,
        uri: str,
        schedule: DriftSchedule | None = None,
        seed: int = 0,
        realtime: bool = True,
        loop: bool | None = None,
        max_frames: int | None = None,
        fps: float | None = None,
    ) -> None:
        self.uri = uri
        self.live = is_live(uri)
        self.schedule = schedule
        self.drift = DriftApplier(schedule, seed) if schedule is not None else None
        self.realtime = realtime and not self.live
        self.loop = (schedule.loop if schedule is not None else False) if loop is None else loop
        self.max_frames = max_frames
        self._capture = open_capture(uri)
        container_fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = fps or (container_fps if 1.0 <= container_fps <= 240.0 else 25.0)
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._next_pos = 0  # file position of the next frame read

    def _read(self) -> tuple[bool, np.ndarray | None]:
        ok, image = self._capture.read()
        if ok:
            self._next_pos += 1
            return ok, image
        if self.live:
            for attempt in range(1, RECONNECT_ATTEMPTS + 1):
                log.warning("lost %s; reconnecting (%d/%d)", self.uri, attempt, RECONNECT_ATTEMPTS)
                time.sleep(min(2.0**attempt, 10.0))
                self._capture.release()
                try:
                    self._capture = open_capture(self.uri)
                except SourceError:
                    continue
                ok, image = self._capture.read()
                if ok:
                    return ok, image
            raise SourceError(f"video source {self.uri!r} stopped delivering frames")
        if self.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
            if not ok:  # some containers do not seek: reopen
                self._capture.release()
                self._capture = open_capture(self.uri)
                ok, image = self._capture.read()
            self._next_pos = 1 if ok else 0
        return ok, image

    def __iter__(self) -> Iterator[Frame]:
        start = time.time()
        start_mono = time.monotonic()
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, image = self._read()
            if not ok or image is None:
                if index == 0:
                    raise SourceError(f"video source {self.uri!r} has no readable frames")
                return
            if self.live:
                t_s = time.monotonic() - start_mono
            else:
                t_s = index / self.fps
                if self.schedule is not None and t_s >= self.schedule.duration_s:
                    return
                if self.realtime:
                    delay = start_mono + t_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            video_index = self._next_pos - 1
            condition = "live"
            if self.drift is not None:
                image = self.drift.apply(image, t_s, index)
                condition = self.drift.condition_at(t_s)
            capture_time = start + t_s if not self.live else time.time()
            yield Frame(index, video_index, t_s, capture_time, image, condition)
            index += 1

    def close(self) -> None:
        self._capture.release()
