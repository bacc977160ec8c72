"""Validating and storing uploaded samples."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from cloud_trainer.state import StateStore
from edgesync.config import LimitsConfig
from edgesync.errors import Backpressure, InvalidInput
from edgesync.types import Sample, StoredSample, check_edge_id

log = logging.getLogger(__name__)

SAMPLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def decode_jpeg(data: bytes, limits: LimitsConfig, source: str) -> np.ndarray:
    """Decode a JPEG, refusing empty, corrupt or oversized images with a message naming source."""
    if not data:
        raise InvalidInput(f"{source}: empty image")
    if not data.startswith(b"\xff\xd8"):
        raise InvalidInput(f"{source}: not a JPEG (bad magic bytes)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"{source}: corrupt JPEG")
    h, w = image.shape[:2]
    if h * w > limits.max_image_pixels:
        raise InvalidInput(f"{source}: image {w}x{h} exceeds {limits.max_image_pixels} pixels")
    return image


class Ingest:
    """Turns an uploaded Sample into a StoredSample, or refuses it with a clear error."""

    def __init__(self, store: StateStore, limits: LimitsConfig, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock  # the benchmark passes its virtual clock
        self._buckets: dict[str, tuple[float, float]] = {}  # edge -> (tokens, when) of its rate limit
        self._lock = threading.Lock()

    def _admit(self, edge_id: str, source: str) -> None:
        """Back-pressure: Backpressure (send it again later) when the edge is over its upload rate
        (a token bucket per edge in this front end) or its samples queue too deep for the teacher."""
        rate, burst = self.limits.max_samples_per_s, self.limits.burst_samples
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(edge_id, (float(burst), now))
            tokens = min(float(burst), tokens + max(0.0, now - then) * rate)
            if tokens < 1.0:
                self._buckets[edge_id] = (tokens, now)
                raise Backpressure(f"{source}: edge {edge_id} is over {rate:g} samples/s; send it again later")
            self._buckets[edge_id] = (tokens - 1.0, now)
        waiting = self.store.count_samples(edge_id, labelled=False)
        if waiting >= self.limits.max_unlabelled_per_edge:
            raise Backpressure(f"{source}: {waiting} samples of edge {edge_id} await the teacher; send it again later")

    def accept(self, sample: Sample, authenticated_edge: str | None = None) -> bool:
        """Validate and store one sample; True if newly stored, False if it was a duplicate."""
        edge_id = check_edge_id(sample.edge_id)
        source = f"sample {sample.sample_id!r} from {edge_id}"
        try:
            if authenticated_edge is not None and authenticated_edge != edge_id:
                raise InvalidInput(f"{source}: stream opened as {authenticated_edge!r}")
            self.store.get_edge(edge_id)  # UnknownEdge for ids that never registered
            if not SAMPLE_ID_PATTERN.fullmatch(sample.sample_id or ""):
                raise InvalidInput(f"invalid sample id {sample.sample_id!r} from {edge_id}")
            if len(sample.jpeg) > self.limits.max_message_bytes:
                raise InvalidInput(f"{source}: {len(sample.jpeg)} bytes exceeds {self.limits.max_message_bytes}")
            image = decode_jpeg(sample.jpeg, self.limits, source)
        except InvalidInput:
            self._count_rejected(edge_id)
            raise
        self._admit(edge_id, source)
        h, w = image.shape[:2]
        stored = StoredSample(
            sample_id=sample.sample_id,
            edge_id=edge_id,
            capture_time=sample.capture_time,
            received_time=self.clock(),
            model_version=sample.model_version,
            score=sample.score,
            frame_index=sample.frame_index,
            student=list(sample.detections),
            width=w,
            height=h,
            scene_start=sample.scene_start,
            audit=sample.audit,
        )
        return self.store.add_sample(stored, sample.jpeg)  # counts it on the edge in the same step

    def _count_rejected(self, edge_id: str) -> None:
        try:
            self.store.incr_edge(edge_id, "samples_rejected")
        except Exception:  # the edge may be unknown: nothing to count against
            log.debug("rejected sample from unregistered edge %s", edge_id)
