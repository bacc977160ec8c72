"""Tells the cloud about scene changes, off the frame loop.

The frame loop hands each change-point over with report(), which never blocks: a bounded
queue, the oldest report dropped (and counted) if the cloud is away for long. A thread sends
them with ReportSceneChange, retrying with backoff.
"""

from __future__ import annotations

import logging
import queue
import threading

import grpc

from edgesync import wire
from edgesync.config import RetryConfig
from edgesync.retry import Backoff
from edgesync.types import SceneChange
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class SceneReporter:
    """Bounded, non-blocking hand-over of scene changes to the cloud."""

    def __init__(self, stub: pb_grpc.EdgeSyncStub, retry: RetryConfig, timeout_s: float, max_pending: int = 16) -> None:
        self.stub = stub
        self.retry = retry
        self.timeout_s = timeout_s
        self._pending: queue.Queue[SceneChange] = queue.Queue(maxsize=max_pending)
        self.sent = 0
        self.dropped = 0
        self.specialists_offered = 0

    def report(self, change: SceneChange) -> None:
        """Queue a change for sending (never blocks; the oldest pending one gives way)."""
        while True:
            try:
                self._pending.put_nowait(change)
                return
            except queue.Full:
                try:
                    self._pending.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.retry)
        while not stop.is_set():
            try:
                change = self._pending.get(timeout=0.5)
            except queue.Empty:
                continue
            while not stop.is_set():
                try:
                    reply = self.stub.ReportSceneChange(wire.scene_change_to_pb(change), timeout=self.timeout_s)
                except grpc.RpcError as exc:
                    if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                        log.warning("cloud refused scene change at %.1f: %s", change.time, exc.details())
                        break
                    log.debug("cannot report scene change (%s); retrying", exc.code())
                    backoff.wait(stop)
                    continue
                self.sent += 1
                if reply.specialist_version:
                    self.specialists_offered += 1
                    log.info("cloud is sending specialist v%d for the new scene", reply.specialist_version)
                break
