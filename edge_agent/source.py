"""Video sources: a file, an RTSP/HTTP URL or a camera index, read with OpenCV.

A file can be paced at its frame rate like a live camera and replayed in a loop; an optional
drift schedule is applied to every frame (for demos and benchmarks), and each frame carries
its position in the file so evaluation can compare with the clean original. Frames are decoded
a few ahead on a reader thread (ReadAhead), so decoding overlaps the frame loop's detection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgesync.config import SourceConfig
from edgesync.drift import DriftApplier, DriftSchedule
from edgesync.errors import SourceError

log = logging.getLogger(__name__)

LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")
RECONNECT_ATTEMPTS = 5
READ_AHEAD = SourceConfig().read_ahead  # frames decoded ahead of the frame loop on a reader thread
_END = object()  # the reader's last item: the source has no more frames


@dataclass
class Frame:
    """One frame as the edge sees it."""

    index: int  # frames since the source started
    video_index: int  # position in the file (index for live sources)
    t_s: float  # stream time: index / fps for files, seconds since start for live sources
    capture_time: float  # wall clock, seconds since the Unix epoch
    image: np.ndarray  # BGR, drift applied
    condition: str  # drift segment name, "live" without a schedule
    # work done on the frame ahead of the loop on the reader thread (VideoSource's prepare hook):
    # image as models with a preprocessing see it, by mode; the change-point image statistics
    views: dict[str, np.ndarray] = field(default_factory=dict)
    statistics: np.ndarray | None = None


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
        read_ahead: int = READ_AHEAD,
        prepare: Callable[[Frame], None] | None = None,
    ) -> None:
        if read_ahead < 0:
            raise ValueError(f"read_ahead must be 0 or more frames, got {read_ahead}")
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
        self.read_ahead = read_ahead  # 0: decode in the caller's loop
        self.prepare = prepare  # run on each frame on the reader thread (not without one)
        self._reader = ReadAhead()

    def _read(self) -> tuple[bool, np.ndarray | None]:
        ok, image = self._capture.read()
        if ok:
            self._next_pos += 1
            return ok, image
        if self.live:
            for attempt in range(1, RECONNECT_ATTEMPTS + 1):
                log.warning("lost %s; reconnecting (%d/%d)", self.uri, attempt, RECONNECT_ATTEMPTS)
                if self._reader.wait(min(2.0**attempt, 10.0)):  # closed meanwhile
                    return False, None
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
        start_mono = time.monotonic()
        frames = self._frames(time.time(), start_mono)
        if self.read_ahead:
            frames = self._reader.frames(frames, self.read_ahead, self.prepare)
        for frame in frames:
            if self.realtime:
                delay = start_mono + frame.t_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield frame

    def _frames(self, start: float, start_mono: float) -> Generator[Frame, None, None]:
        """Decode, time-stamp and drift each frame (on the reader thread when reading ahead)."""
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
            video_index = self._next_pos - 1
            condition = "live"
            if self.drift is not None:
                image = self.drift.apply(image, t_s, index)
                condition = self.drift.condition_at(t_s)
            capture_time = start + t_s if not self.live else time.time()
            yield Frame(index, video_index, t_s, capture_time, image, condition)
            index += 1

    def close(self) -> None:
        self._reader.stop()  # never release the capture under a read
        self._capture.release()


class ReadAhead:
    """Runs a source's frame iterator on a background thread, up to `depth` frames ahead.

    OpenCV releases the GIL while it decodes, so the next frame is decoded (and prepared, see
    EdgeAgent.prepare) while the frame loop detects on this one: a frame costs the loop the longer
    of the two, not their sum (ultralytics reads live streams on a thread the same way). Frames
    come in order; an error on the reader thread is raised in the caller's loop, after the frames
    read before it. stop() ends the thread, so the capture is never released under a read.
    """

    def __init__(self) -> None:
        self._stopping = threading.Event()  # the current reader's (or, without one, the source's)
        self._thread: threading.Thread | None = None

    def frames(
        self, produce: Generator[Frame, None, None], depth: int, prepare: Callable[[Frame], None] | None = None
    ) -> Iterator[Frame]:
        """produce's frames, read on a thread up to depth ahead of the caller, each passed to
        prepare there first (work on the frame that the loop would otherwise do itself)."""
        self.stop()  # one reader per source: iterating it again ends the earlier reader first
        stopping = self._stopping = threading.Event()
        slots: queue.Queue = queue.Queue(maxsize=depth)

        def put(item: object) -> bool:
            while not stopping.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for frame in produce:
                    if prepare is not None:
                        prepare(frame)
                    if not put(frame):
                        return
                put(_END)
            except BaseException as exc:  # the caller's loop raises it
                put(exc)
            finally:
                produce.close()

        thread = self._thread = threading.Thread(target=read, name="video-reader", daemon=True)
        thread.start()
        try:
            while (item := slots.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            _end(stopping, thread)  # this reader only: a later iteration has its own

    def wait(self, seconds: float) -> bool:
        """Sleep up to seconds (a reconnect's back-off); True when the source was stopped meanwhile."""
        return self._stopping.wait(seconds)

    def stop(self) -> None:
        """End the reader thread (it finishes the read in progress)."""
        _end(self._stopping, self._thread)


def _end(stopping: threading.Event, thread: threading.Thread | None) -> None:
    stopping.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join()
