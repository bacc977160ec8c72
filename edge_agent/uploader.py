"""Streams samples from the spool to the cloud, acknowledged one by one, retrying with backoff."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque

import grpc

from edge_agent.spool import SampleSpool
from edgesync import wire
from edgesync.config import RetryConfig
from edgesync.retry import Backoff
from edgesync.v1 import edgesync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class Uploader:
    """Owns the UploadSamples stream. A sample leaves the spool only when the cloud acknowledged it.

    Samples sent but not yet acknowledged when a stream breaks are handed back to the spool
    (nack) and sent again on the next stream; the cloud stores a sample id once, so a resend
    is harmless.
    """

    def __init__(
        self, stub: pb_grpc.EdgeSyncStub, spool: SampleSpool, retry: RetryConfig, max_in_flight: int = 8
    ) -> None:
        self.stub = stub
        self.spool = spool
        self.backoff = Backoff(retry)
        self.max_in_flight = max_in_flight
        self.sent_bytes = 0
        self.acked = 0
        self.refused = 0
        self.held_back = 0  # samples the cloud asked to send again later (back-pressure)
        self._handover = threading.Lock()  # between the request generator and the end of a stream
        self.connected = False

    def _requests(self, in_flight: deque, window: threading.Semaphore, stop: threading.Event, broken: threading.Event):
        while not stop.is_set() and not broken.is_set():
            if not window.acquire(timeout=0.2):
                continue
            sample = self.spool.get(timeout_s=0.2)
            if sample is None:
                window.release()
                continue
            with self._handover:  # the stream may have ended meanwhile: then the sample goes back at once
                if broken.is_set():
                    self.spool.nack(sample.sample_id)
                    return
                in_flight.append(sample)
            self.sent_bytes += len(sample.jpeg)
            yield wire.sample_to_pb(sample)

    def _stream_once(self, stop: threading.Event) -> None:
        in_flight: deque = deque()
        window = threading.Semaphore(self.max_in_flight)
        broken = threading.Event()
        responses = self.stub.UploadSamples(self._requests(in_flight, window, stop, broken))
        try:
            for ack in responses:
                self.connected = True
                sample = in_flight.popleft()
                if ack.sample_id != sample.sample_id:
                    log.error("ack for %s while %s was expected; resending", ack.sample_id, sample.sample_id)
                    self.spool.nack(sample.sample_id)
                elif ack.accepted:
                    self.backoff.reset()
                    self.spool.ack(sample.sample_id)
                    self.acked += 1
                elif ack.retry:  # back-pressure: keep it, stop sending, come back after a growing backoff
                    in_flight.appendleft(sample)  # the finally below returns it first, before the later ones
                    self.held_back += 1
                    log.info("cloud holds back uploads (%s); retrying later", ack.error)
                    responses.cancel()
                    return
                else:  # refused for good (bad frame, unknown edge): keeping it would retry forever
                    self.backoff.reset()  # the link works
                    log.warning("cloud refused sample %s: %s", sample.sample_id, ack.error)
                    self.spool.ack(sample.sample_id)
                    self.refused += 1
                window.release()
                if stop.is_set():
                    responses.cancel()
        finally:
            with self._handover:  # no sample can slip into in_flight after this
                broken.set()
                while in_flight:  # back to the head of the spool, newest first so order is kept
                    self.spool.nack(in_flight.pop().sample_id)

    def run(self, stop: threading.Event) -> None:
        """Keep a stream open until stop is set; reconnect with backoff on failure."""
        while not stop.is_set():
            try:
                self._stream_once(stop)
            except grpc.RpcError as exc:
                self.connected = False
                code = exc.code() if hasattr(exc, "code") else None
                if code != grpc.StatusCode.CANCELLED:
                    log.warning("upload stream failed (%s); retrying", code)
            except queue.Empty:  # pragma: no cover - spool.get returns None rather than raising
                pass
            if not stop.is_set():
                self.backoff.wait(stop)
